"""jaxcnn's training step against an independent implementation: Kim's Theano loop re-written in PyTorch
(reference/kim2014_torch.py). Same initial weights, same batches, dropout off (the two draw masks from different
generators): after several steps every parameter must agree. This checks, against code that shares none of
jaxcnn's, the convolution's orientation, masked max-over-time, the mean loss over a short last batch, Adadelta
(dense and jaxcnn's lazy row-sparse embedding update), the padding row, and Kim's max-norm (at Kim's 3, which six
steps from a zero softmax layer do not reach, and at 0.02, where it binds).

Skips where PyTorch is not installed (it is never a jaxcnn dependency; `.ci/run` installs it when it can).
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

from jaxcnn.train.program import epoch_indices
from tests.train.helpers import params_of, run_steps, single_program, train_rows, write_splits
from tests.train.test_engine import tiny_cfg

torch = pytest.importorskip("torch")

REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "reference" / "kim2014_torch.py"


def load_reference():
    spec = importlib.util.spec_from_file_location("kim2014_torch", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def to_torch(ref, params, num_classes: int, windows, maps: int):
    """The reference model holding jaxcnn's parameters (kernels <width, in, maps> -> <maps, in, width>)."""
    table = np.array(params["embed"]["embedding"])
    model = ref.KimCNN(table.shape[0], num_classes, dim=table.shape[1], maps=maps, windows=windows, p=0.0,
                       masked_pooling=True)
    with torch.no_grad():
        model.words.copy_(torch.from_numpy(table))
        for i, width in enumerate(windows):
            conv = params["bank"][f"conv_w{width}"]
            model.filters[i].copy_(torch.from_numpy(np.array(conv["kernel"]).transpose(2, 1, 0).copy()))
            model.biases[i].copy_(torch.from_numpy(np.array(conv["bias"])))
        model.W.copy_(torch.from_numpy(np.array(params["head"]["kernel"])))
        model.b.copy_(torch.from_numpy(np.array(params["head"]["bias"])))
    return model


@pytest.mark.parametrize("lazy, max_norm", [(True, 3.0), (False, 0.02)],
                         ids=["lazy-embeddings-kims-max-norm", "dense-embeddings-active-max-norm"])
def test_training_steps_match_kims_loop_in_pytorch(tmp_path, lazy, max_norm):
    ref = load_reference()
    # 50 training sentences in batches of 12: four full batches and a short one of 2 within the 6 steps.
    files = write_splits(tmp_path / "data", n_train=50)
    windows, maps, steps = (3, 4, 5), 6, 6
    cfg = tiny_cfg(files, windows=windows, maps=maps, dropout=0.0, batch_size=12, devices=1, seed=3,
                   lazy_embeddings=lazy, max_norm=max_norm)
    assert (cfg.optim.optimizer, cfg.optim.rho, cfg.optim.eps) == ("adadelta", 0.95, 1e-6)
    program = single_program(cfg)
    initial = params_of(program)
    model = to_torch(ref, initial, program.data.num_classes, windows, maps)
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.95, eps=1e-6)

    ids, labels = train_rows(program)
    order = epoch_indices(len(labels), 12, program.batch, cfg.train.seed, 1, steps)[0]
    for rows in order:
        rows = rows[rows >= 0]
        if len(rows) == 0:
            continue
        ref.train_step(model, opt, torch.from_numpy(ids[rows]).long(), torch.from_numpy(labels[rows]).long(),
                       max_norm=max_norm)
    run_steps(program, steps)
    ours = params_of(program)

    def check(a, b, name):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6, err_msg=name)

    check(ours["embed"]["embedding"], model.words.detach().numpy(), "embedding")
    for i, width in enumerate(windows):
        conv = ours["bank"][f"conv_w{width}"]
        check(conv["kernel"], model.filters[i].detach().numpy().transpose(2, 1, 0), f"conv_w{width}/kernel")
        check(conv["bias"], model.biases[i].detach().numpy(), f"conv_w{width}/bias")
    check(ours["head"]["kernel"], model.W.detach().numpy(), "head/kernel")
    check(ours["head"]["bias"], model.b.detach().numpy(), "head/bias")
    norms = np.linalg.norm(np.asarray(ours["head"]["kernel"]), axis=0)
    if max_norm < 1:  # the constraint was binding, so it was compared too
        np.testing.assert_allclose(norms, max_norm, rtol=1e-5)
    # Six Adadelta steps from U(-0.01, 0.01) filters move them by far more than the tolerance: the check has teeth.
    first = f"conv_w{windows[0]}"
    assert np.abs(np.asarray(initial["bank"][first]["kernel"]) - np.asarray(ours["bank"][first]["kernel"])).max() > 1e-3
