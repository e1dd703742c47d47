"""Mixed precision (`precision: bfloat16`): the bank and the head multiply in bfloat16 and sum in float32; the
parameters, the optimizer state, the logits, the losses and the metrics stay float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import configs
from jaxcnn.errors import ConfigError
from jaxcnn.layers import bf16_ffi
from jaxcnn.models.text_cnn import fold_embeddings
from tests.train.helpers import (jaxpr_eqns, params_of, run_steps, single_program, small_text_cnn, write_splits,
                                 write_word2vec_text)

BF16 = jnp.dtype(jnp.bfloat16)


def _dots(fn, *args):
    """(operand dtypes, result dtype) of every dot_general in fn's jaxpr, the gradient's included."""
    return [(tuple(v.aval.dtype for v in e.invars), e.outvars[0].aval.dtype) for e in jaxpr_eqns(fn, *args)
            if e.primitive.name == "dot_general"]


@pytest.mark.parametrize("variant, pooling", [("rand", "max"), ("static", "kmax"), ("non-static", "avg"),
                                              ("multichannel", "max")])
def test_bfloat16_logits_are_float32_and_agree_to_bfloat16_rounding(variant, pooling):
    model32, params, ids = small_text_cnn(variant, pooling)
    model16 = model32.clone(dtype=jnp.bfloat16)
    want = model32.apply({"params": params}, ids)
    got = model16.apply({"params": params}, ids)
    assert got.dtype == jnp.float32
    # bfloat16 keeps 8 bits of mantissa: each product is off by at most 2^-8 relative; the sums are exact-ish.
    scale = float(jnp.abs(want).max())
    assert scale > 0.1
    np.testing.assert_allclose(got, want, atol=2 ** -7 * scale * 4)
    assert not np.array_equal(got, want)  # it really rounded
    # The same through the folded inference table (a float32 row lookup, then the bfloat16 head).
    folded = fold_embeddings(params, (2, 3))
    np.testing.assert_allclose(model16.apply({"params": params}, ids, folded=folded), got, atol=2 ** -7 * scale * 4)


def test_the_bank_and_the_head_multiply_in_bfloat16_and_accumulate_in_float32(monkeypatch):
    # XLA's dots (where AMX is found, auto takes jaxcnn's FFI kernel: tests/layers/test_bf16_ffi.py).
    monkeypatch.setenv(bf16_ffi.ENV, "xla")
    model, params, ids = small_text_cnn(dtype=jnp.bfloat16)

    def loss(p):
        return model.apply({"params": p}, ids).sum()

    dots = _dots(jax.grad(loss), params)
    # forward: bank + head; backward: each one's input and weight gradients.
    assert len(dots) >= 4
    assert all(ops == (BF16, BF16) and out == jnp.float32 for ops, out in dots), dots
    grads = jax.grad(loss)(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    # Against float32's gradients: the same direction, to bfloat16 rounding.
    want = jax.grad(lambda p: model.clone(dtype=None).apply({"params": p}, ids).sum())(params)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
        g, w = np.ravel(g), np.ravel(w)
        if np.abs(w).max() > 0:
            assert g @ w / (np.linalg.norm(g) * np.linalg.norm(w)) > 0.999
    # float32 (the default) has no 16-bit operand anywhere.
    dots32 = _dots(jax.grad(lambda p: model.clone(dtype=None).apply({"params": p}, ids).sum()), params)
    assert all(ops == (jnp.float32, jnp.float32) and out == jnp.float32 for ops, out in dots32), dots32


def test_a_bfloat16_run_keeps_float32_state_and_moves_every_parameter(tmp_path):
    files = write_splits(tmp_path / "data")
    vectors = str(write_word2vec_text(tmp_path / "vec.txt", dim=16))
    cfg = configs.tiny().replace(dataset=None, **files, devices=1, precision="bfloat16", variant="multichannel",
                                 embeddings=vectors)
    program = single_program(cfg)
    before = params_of(program)
    sums = run_steps(program, 4)
    after = params_of(program)
    assert np.isfinite(sums["loss_sum"]) and sums["count"] > 0
    for state in (program.state.params, program.state.opt_state):
        assert {x.dtype for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)} == {
            jnp.dtype(jnp.float32)}
    moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), before, after)
    assert moved.pop("embed_static") == {"embedding": False}
    assert all(jax.tree.leaves(moved)), moved
    # Deterministic: the same run again takes the same steps.
    again = single_program(cfg)
    run_steps(again, 4)
    jax.tree.map(np.testing.assert_array_equal, after, params_of(again))


def test_precision_is_a_config_field_with_a_float32_default():
    cfg = configs.tiny()
    assert cfg.model.precision == "float32"
    as_dict = cfg.replace(precision="bfloat16").to_dict()
    assert configs.Config.from_dict(as_dict).model.precision == "bfloat16"
    del as_dict["model"]["precision"]  # a workdir written before the field existed
    assert configs.Config.from_dict(as_dict).model.precision == "float32"
    with pytest.raises(ConfigError, match="precision"):
        cfg.replace(precision="float16")
