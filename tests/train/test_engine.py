"""The engine's behaviour: every parameter moves, determinism, device-count invariance, exact resume."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import configs
from jaxcnn.train import parallel
from jaxcnn.train.trainer import Run, epoch_indices, eval_indices, train_and_evaluate
from tests.train.helpers import write_splits, write_word2vec_text


@pytest.fixture
def files(tmp_path):
    return write_splits(tmp_path / "data")


def tiny_cfg(files, **overrides):
    return configs.tiny().replace(dataset=None, **files, **overrides)


def params_of(run):
    return jax.device_get(run.state.params)


def run_steps(run, steps: int):
    """Runs `steps` optimizer steps of epoch 1 through the jitted block function."""
    n = len(run.data.splits["train"]["label"])
    idx = epoch_indices(n, run.cfg.train.batch_size, run.batch, run.cfg.train.seed, 1, steps)[0]
    run.state, sums, bad = run.train_fn(run.state, run.device_data["train"], parallel.replicate(idx, run.mesh), run.rng)
    assert int(bad) == -1
    return jax.device_get(sums)


def test_epoch_indices_cover_every_example_once():
    idx = epoch_indices(n=23, batch_size=5, padded_batch=8, seed=0, epoch=3, steps_per_dispatch=2)
    assert idx.shape == (3, 2, 8)  # 5 batches of 5 -> 3 blocks of 2 steps, each batch padded to 8 slots
    real = idx[idx >= 0]
    assert sorted(real.tolist()) == list(range(23))
    assert (idx[..., 5:] == -1).all()
    again = epoch_indices(n=23, batch_size=5, padded_batch=8, seed=0, epoch=3, steps_per_dispatch=2)
    np.testing.assert_array_equal(idx, again)
    other = epoch_indices(n=23, batch_size=5, padded_batch=8, seed=0, epoch=4, steps_per_dispatch=2)
    assert not np.array_equal(idx, other)


def test_eval_indices_keep_every_example():
    idx = eval_indices(10, 4)
    assert idx.shape == (3, 4)
    assert idx[idx >= 0].tolist() == list(range(10))


@pytest.mark.parametrize("variant", ["rand", "multichannel"])
def test_steps_move_every_trainable_parameter_and_no_static_one(tmp_path, files, variant):
    vectors = str(write_word2vec_text(tmp_path / "vec.txt", dim=16))
    cfg = tiny_cfg(files, variant=variant, embeddings=None if variant == "rand" else vectors, devices=1)
    run = Run(cfg, tmp_path / "w")
    before = params_of(run)
    # Kim's softmax layer starts at zero, so the first step cannot reach the layers below it: take two.
    run_steps(run, 2)
    after = params_of(run)
    flat_before = dict(jax.tree_util.tree_leaves_with_path(before))
    for path, leaf in jax.tree_util.tree_leaves_with_path(after):
        name = jax.tree_util.keystr(path)
        if "embed_static" in name:
            np.testing.assert_array_equal(leaf, flat_before[path], err_msg=name)
        else:
            assert not np.allclose(leaf, flat_before[path]), f"{name} did not move"
    for table in ("embed", "embed_static"):
        if table in after:
            np.testing.assert_array_equal(after[table]["embedding"][0], 0.0)  # padding row stays zero


def test_static_embedding_has_no_optimizer_state(tmp_path, files):
    vectors = str(write_word2vec_text(tmp_path / "vec.txt", dim=16))
    run = Run(tiny_cfg(files, variant="static", embeddings=vectors, devices=1), tmp_path / "w")
    vocab_rows = len(run.data.encoder.vocab)
    big = [x for x in jax.tree.leaves(run.state.opt_state) if getattr(x, "shape", ())[:1] == (vocab_rows,)]
    assert big == []


def test_one_device_and_eight_devices_take_the_same_step(tmp_path, files):
    assert jax.device_count() >= 8, "tests/conftest.py sets 8 simulated devices"
    results = []
    for devices in (1, 8):
        run = Run(tiny_cfg(files, devices=devices, batch_size=12), tmp_path / f"w{devices}")
        assert run.batch == (12 if devices == 1 else 16)  # 12 does not divide by 8: padded with masked slots
        sums = run_steps(run, 3)
        results.append((params_of(run), sums))
    (p1, s1), (p8, s8) = results
    np.testing.assert_allclose(s1["loss_sum"], s8["loss_sum"], rtol=1e-5)
    np.testing.assert_array_equal(s1["confusion"], s8["confusion"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), p1, p8)


def test_same_seed_same_losses_other_seed_other_losses(tmp_path, files):
    losses = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_and_evaluate(tiny_cfg(files, seed=seed, epochs=2), tmp_path / name)
        records = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["loss"] for r in records if r["kind"] == "train"])
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_resume_continues_exactly(tmp_path, files):
    full = train_and_evaluate(tiny_cfg(files, epochs=4), tmp_path / "full")
    train_and_evaluate(tiny_cfg(files, epochs=2), tmp_path / "split")
    resumed = train_and_evaluate(tiny_cfg(files, epochs=4), tmp_path / "split")
    assert resumed["epochs"] == full["epochs"] == 4
    assert resumed["test_accuracy"] == full["test_accuracy"]

    def records(name):
        return [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    a, b = records("full"), records("split")
    assert [(r["kind"], r["epoch"]) for r in a] == [(r["kind"], r["epoch"]) for r in b]  # no gap, no duplicate
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    from jaxcnn.predict import Predictor

    pa = Predictor.from_workdir(tmp_path / "full", checkpoint="latest").state.params
    pb = Predictor.from_workdir(tmp_path / "split", checkpoint="latest").state.params
    jax.tree.map(np.testing.assert_array_equal, pa, pb)  # identical on CPU, bit for bit


def test_training_learns_the_synthetic_task(tmp_path, files):
    summary = train_and_evaluate(tiny_cfg(files, epochs=6, optimizer="adam", lr=0.01), tmp_path / "w")
    assert summary["test_accuracy"] >= 0.9
    assert 1 <= summary["best_epoch"] <= 6
    for name in ("summary.json", "metrics.jsonl", "config.json"):
        assert (tmp_path / "w" / name).exists()


def test_non_finite_loss_stops_with_the_step_named(tmp_path, files):
    from jaxcnn.errors import TrainingError

    # A learning rate this large overflows float32 within a few SGD steps.
    cfg = tiny_cfg(files, optimizer="sgd", lr=1e30, max_norm=None, epochs=3)
    with pytest.raises(TrainingError, match=r"non-finite loss or gradient at step \d+"):
        train_and_evaluate(cfg, tmp_path / "w")


def test_padded_batch_size():
    mesh = parallel.make_mesh(8)
    assert parallel.padded_batch_size(50, mesh) == 56
    assert parallel.padded_batch_size(48, mesh) == 48


@pytest.mark.parametrize("optimizer, variant, weight_decay", [
    ("adadelta", "rand", 0.0), ("adagrad", "multichannel", 0.0), ("adadelta", "non-static", 0.1)])
def test_lazy_embedding_rows_equal_the_dense_update(tmp_path, files, optimizer, variant, weight_decay):
    vectors = str(write_word2vec_text(tmp_path / "vec.txt", dim=16))
    results = []
    for lazy in (True, False):
        cfg = tiny_cfg(files, optimizer=optimizer, variant=variant, lazy_embeddings=lazy, devices=1,
                       embeddings=None if variant == "rand" else vectors, weight_decay=weight_decay)
        run = Run(cfg, tmp_path / f"w{lazy}")
        assert (run.state.sparse is not None) == lazy
        # Several steps, so rows skip some steps and must catch up their accumulators when touched again.
        run_steps(run, 6)
        if lazy:
            last = np.asarray(run.state.opt_state["sparse"]["embed"]["last"])
            assert ((last > 0) & (last < 6)).any()  # some rows were skipped by later steps and are behind
        results.append(params_of(run))
    lazy_params, dense_params = results
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), lazy_params, dense_params)


def test_lazy_embeddings_only_where_exact(tmp_path, files):
    assert Run(tiny_cfg(files, optimizer="adam", devices=1), tmp_path / "a").state.sparse is None
    assert Run(tiny_cfg(files, clip_norm=1.0, devices=1), tmp_path / "b").state.sparse is None
    assert Run(tiny_cfg(files, weight_decay=1e-4, devices=1), tmp_path / "d").state.sparse is not None  # kernels only
    assert Run(tiny_cfg(files, devices=1), tmp_path / "c").state.sparse.rule == "adadelta"


def test_one_compilation_per_shape_across_epochs(tmp_path, files):
    run = Run(tiny_cfg(files, devices=1), tmp_path / "w")
    for epoch in (1, 2, 3):
        run.train_epoch(epoch, None)
        run.evaluate("dev")
        run.evaluate("test")
    assert run.train_fn._cache_size() == 1
    # dev and test have 40 examples each here, so one eval shape serves both
    assert run.eval_fn._cache_size() == 1


def test_dev_and_test_words_with_vectors_join_the_vocabulary(tmp_path):
    from jaxcnn.tasks import text
    from tests.train.helpers import write_kim

    vectors = tmp_path / "vec.txt"
    vectors.write_text("3 2\nfine 1 2\nsuperb 3 4\nunseen 5 6\n", encoding="utf-8")
    files = {"train_file": str(write_kim(tmp_path / "train.txt", ["fine film", "dull film"], [1, 0])),
             "dev_file": str(write_kim(tmp_path / "dev.txt", ["superb film"], [1])),
             "test_file": str(write_kim(tmp_path / "test.txt", ["nothing here", "unseen"], [0, 1]))}
    cfg = tiny_cfg(files, variant="static", embeddings=str(vectors), embed_dim=2)
    data = text.prepare(cfg)
    vocab = data.encoder.vocab
    assert vocab.itos[:2] == ["<pad>", "<unk>"] and "superb" in vocab and "unseen" in vocab
    assert "nothing" not in vocab  # no vector: stays <unk>
    np.testing.assert_array_equal(data.embeddings[vocab.get("unseen")], [5, 6])
    assert data.splits["test"]["ids"][1].max() == vocab.get("unseen")
    plain = text.prepare(cfg.replace(extend_vocab=False))
    assert "superb" not in plain.encoder.vocab and len(plain.embeddings) == len(plain.encoder.vocab)
