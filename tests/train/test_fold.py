"""Inference with the embedding folded into the conv taps (`fold_embeddings`) gives the model's own logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models.text_cnn import TextCNN, fold_embeddings
from jaxcnn.tasks import text as text_task


@pytest.mark.parametrize("variant, pooling, hidden", [("rand", "max", ()), ("static", "kmax", ()),
                                                       ("non-static", "avg", (7,)), ("multichannel", "max", ())])
def test_folded_logits_equal_the_plain_forward(variant, pooling, hidden):
    model = TextCNN(vocab_size=30, num_classes=3, variant=variant, embed_dim=8, windows=(2, 3), maps=4,
                    pooling=pooling, k=2, hidden=hidden)
    ids = jax.random.randint(jax.random.key(1), (6, 12), 0, 30).at[:, -3:].set(0).at[0].set(0)  # row 0: empty
    params = model.init(jax.random.key(0), ids)["params"]
    # Kim's zero head would make every logit 0 = 0; give it weights so the features really reach the output.
    rng = np.random.default_rng(2)  # NumPy's draws: jax.random's, op by op, compiled a program per leaf shape
    params = jax.tree.map(lambda a: a + 0.3 * rng.standard_normal(a.shape, np.float32), params)
    folded = fold_embeddings(params, (2, 3))
    assert folded.shape == (30, (2 + 3) * 4)
    plain = model.apply({"params": params}, ids)
    np.testing.assert_allclose(model.apply({"params": params}, ids, folded=folded), plain, atol=1e-5)
    assert float(jnp.abs(plain).max()) > 0.1
    with pytest.raises(ValueError, match="folded tables are for inference"):
        model.apply({"params": params}, ids, folded=folded, train=True, dropout_keys=jax.random.split(
            jax.random.key(0), 6))


def test_inference_skips_the_fold_where_the_table_would_not_fit(monkeypatch):
    from jaxcnn import configs, tasks

    cfg = configs.tiny()
    task = tasks.get("text")
    params = {"embed": {"embedding": jnp.zeros((50, 8))},
              "bank": {f"conv_w{w}": {"kernel": jnp.ones((w, 8, cfg.model.maps))} for w in cfg.model.windows}}
    assert task.inference_aux(cfg, params).shape == (50, sum(cfg.model.windows) * cfg.model.maps)
    monkeypatch.setattr(text_task, "FOLD_LIMIT_BYTES", 100)
    assert task.inference_aux(cfg, params) is None
