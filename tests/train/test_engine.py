"""The engine's behaviour: every parameter moves, determinism, device-count invariance, exact resume."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from jaxcnn import configs
from jaxcnn.train import parallel
from jaxcnn.train.program import epoch_indices
from jaxcnn.train.trainer import train_and_evaluate
from tests.train.helpers import params_of, run_steps, single_program, write_splits, write_word2vec_text


@pytest.fixture
def files(tmp_path):
    return write_splits(tmp_path / "data")


def tiny_cfg(files, **overrides):
    return configs.tiny().replace(dataset=None, **files, **overrides)


# The whole-run tests below (determinism, resume) train one filter width: the engine's behaviour is the same, and
# each run compiles a smaller program. Both use this one config, so they also share compiled programs.
ONE_WIDTH = {"windows": (2,)}


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


def test_eval_rows_keep_every_example(tmp_path, files):
    program = single_program(tiny_cfg(files, devices=1, eval_batch_size=16))
    rows = program.eval_rows("test")
    assert rows.shape == (1, 3, 16)  # 40 test examples in 3 batches of 16, the last one padded with -1
    assert rows[rows >= 0].tolist() == program.members[0].test.tolist()


@pytest.mark.parametrize("variant", ["rand", "multichannel"])
def test_steps_move_every_trainable_parameter_and_no_static_one(tmp_path, files, variant):
    vectors = str(write_word2vec_text(tmp_path / "vec.txt", dim=16))
    cfg = tiny_cfg(files, variant=variant, embeddings=None if variant == "rand" else vectors, devices=1)
    program = single_program(cfg)
    before = params_of(program)
    # Kim's softmax layer starts at zero, so the first step cannot reach the layers below it: take two.
    run_steps(program, 2)
    after = params_of(program)
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
    program = single_program(tiny_cfg(files, variant="static", embeddings=vectors, devices=1))
    vocab_rows = len(program.data.encoder.vocab)
    big = [x for x in jax.tree.leaves(program.state.opt_state) if getattr(x, "shape", ())[1:2] == (vocab_rows,)]
    assert big == []


def test_one_device_and_eight_devices_take_the_same_step(tmp_path, files):
    assert jax.device_count() >= 8, "tests/conftest.py sets 8 simulated devices"
    results = []
    for devices in (1, 8):
        program = single_program(tiny_cfg(files, devices=devices, batch_size=12))
        assert program.batch == (12 if devices == 1 else 16)  # 12 does not divide by 8: padded with masked slots
        sums = run_steps(program, 3)
        results.append((params_of(program), sums))
    (p1, s1), (p8, s8) = results
    np.testing.assert_allclose(s1["loss_sum"], s8["loss_sum"], rtol=1e-5)
    np.testing.assert_array_equal(s1["confusion"], s8["confusion"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), p1, p8)


def test_same_seed_same_losses_other_seed_other_losses(tmp_path, files):
    losses = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_and_evaluate(tiny_cfg(files, seed=seed, epochs=2, **ONE_WIDTH), tmp_path / name)
        records = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["loss"] for r in records if r["kind"] == "train"])
    assert losses[0] == losses[1]
    assert losses[0] != losses[2]


def test_resume_continues_exactly(tmp_path, files):
    # 1 + 1 epochs against 2: the resumed epoch needs the saved parameters, optimizer state, data order and
    # dropout stream to reproduce the uninterrupted one bit for bit.
    full = train_and_evaluate(tiny_cfg(files, epochs=2, **ONE_WIDTH), tmp_path / "full")
    train_and_evaluate(tiny_cfg(files, epochs=1, **ONE_WIDTH), tmp_path / "split")
    resumed = train_and_evaluate(tiny_cfg(files, epochs=2, **ONE_WIDTH), tmp_path / "split")
    assert resumed["epochs"] == full["epochs"] == 2
    assert resumed["test_accuracy"] == full["test_accuracy"]

    def records(name):
        return [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    a, b = records("full"), records("split")
    assert [(r["kind"], r["epoch"]) for r in a] == [(r["kind"], r["epoch"]) for r in b]  # no gap, no duplicate
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    from jaxcnn.predict import load_program

    pa, pb = (load_program(tmp_path / w, checkpoint="latest").state for w in ("full", "split"))
    jax.tree.map(np.testing.assert_array_equal, (pa.params, pa.opt_state), (pb.params, pb.opt_state))  # bit for bit


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
    mesh = parallel.make_mesh(1, 8)
    assert parallel.padded_batch_size(50, mesh) == 56
    assert parallel.padded_batch_size(48, mesh) == 48
    assert parallel.padded_batch_size(50, parallel.make_mesh(4, 8)) == 50  # 4 member shards x 2 data devices


@pytest.mark.parametrize("optimizer, variant, weight_decay", [
    ("adadelta", "rand", 0.0), ("adagrad", "multichannel", 0.0), ("adadelta", "non-static", 0.1)])
def test_lazy_embedding_rows_equal_the_dense_update(tmp_path, files, optimizer, variant, weight_decay):
    vectors = str(write_word2vec_text(tmp_path / "vec.txt", dim=16))
    results = []
    for lazy in (True, False):
        cfg = tiny_cfg(files, optimizer=optimizer, variant=variant, lazy_embeddings=lazy, devices=1,
                       embeddings=None if variant == "rand" else vectors, weight_decay=weight_decay)
        program = single_program(cfg)
        assert (program.state.sparse is not None) == lazy
        # Several steps, so rows skip some steps and must catch up their accumulators when touched again.
        run_steps(program, 6)
        if lazy:
            last = np.asarray(program.state.opt_state["sparse"]["embed"]["last"])[0]
            assert ((last > 0) & (last < 6)).any()  # some rows were skipped by later steps and are behind
        results.append(params_of(program))
    lazy_params, dense_params = results
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), lazy_params, dense_params)


def test_lazy_embeddings_only_where_exact(tmp_path, files):
    assert single_program(tiny_cfg(files, optimizer="adam", devices=1)).state.sparse is None
    assert single_program(tiny_cfg(files, clip_norm=1.0, devices=1)).state.sparse is None
    assert single_program(tiny_cfg(files, weight_decay=1e-4, devices=1)).state.sparse is not None  # kernels only
    assert single_program(tiny_cfg(files, devices=1)).state.sparse.rule == "adadelta"


def test_one_compilation_per_shape_across_epochs(tmp_path, files):
    program = single_program(tiny_cfg(files, devices=1))
    for epoch in (1, 2, 3):
        program.train_epoch(epoch, [True])
        program.evaluate("dev")
        program.evaluate("test")
    assert program.train_fn._cache_size() == 1
    # dev and test have 40 examples each here, so one eval shape serves both
    assert program.eval_fn._cache_size() == 1


def test_dev_and_test_words_with_vectors_join_the_vocabulary(tmp_path):
    from tests.train.helpers import write_kim

    vectors = tmp_path / "vec.txt"
    vectors.write_text("3 2\nfine 1 2\nsuperb 3 4\nunseen 5 6\n", encoding="utf-8")
    files = {"train_file": str(write_kim(tmp_path / "train.txt", ["fine film", "dull film"], [1, 0])),
             "dev_file": str(write_kim(tmp_path / "dev.txt", ["superb film"], [1])),
             "test_file": str(write_kim(tmp_path / "test.txt", ["nothing here", "unseen"], [0, 1]))}
    cfg = tiny_cfg(files, variant="static", embeddings=str(vectors), embed_dim=2)
    program = single_program(cfg)
    data, test_rows = program.data, program.members[0].test
    vocab = data.encoder.vocab
    assert vocab.itos[:2] == ["<pad>", "<unk>"] and "superb" in vocab and "unseen" in vocab
    assert "nothing" not in vocab  # no vector: stays <unk>
    np.testing.assert_array_equal(data.pretrained(cfg.train.seed)[vocab.get("unseen")], [5, 6])
    assert data.arrays["ids"][test_rows[1]].max() == vocab.get("unseen")
    plain = single_program(cfg.replace(extend_vocab=False)).data
    assert "superb" not in plain.encoder.vocab and len(plain.pretrained(cfg.train.seed)) == len(plain.encoder.vocab)
