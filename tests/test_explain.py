"""`jaxcnn explain`: every logit is the head's bias plus the contributions of the n-grams that won the filters."""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import cli, explain
from jaxcnn.explain_views import html_page, text_line
from jaxcnn.models.text_cnn import TextCNN

from tests.train.helpers import write_splits


def ids_batch() -> np.ndarray:
    ids = np.zeros((4, 20), np.int32)
    ids[0, 4:12] = np.arange(2, 10)
    ids[1, 4:6] = [3, 4]  # shorter than the widest filter
    ids[2, 4:18] = np.arange(20, 34) % 29 + 1  # an <unk> (1) among them
    return ids  # row 3: the empty input


def random_model(**kw):
    model = TextCNN(vocab_size=30, num_classes=3, embed_dim=8, maps=5, k=2, **kw)
    variables = model.init(jax.random.PRNGKey(0), jnp.asarray(ids_batch()))
    # Kim's head starts at zero; random heads and biases make every term count. (NumPy's draws: jax.random's, op
    # by op, compiled a program per leaf shape.)
    rng = np.random.default_rng(1)
    return model, jax.tree.map(lambda x: x + 0.3 * rng.standard_normal(x.shape, np.float32), variables)


def sums(out):
    windows = sum(w.sum(1) for w in out["windows"].values())
    return out["bias"] + windows, out["tokens"].sum(1) + out["filter_bias"], windows


@pytest.mark.parametrize("variant", ["rand", "static", "non-static", "multichannel"])
@pytest.mark.parametrize("pooling", ["max", "kmax", "avg"])
def test_bias_plus_ngrams_is_the_logit(variant, pooling):
    model, variables = random_model(variant=variant, pooling=pooling, dropout_scaling="kim")
    ids = jnp.asarray(ids_batch())
    logits = model.apply(variables, ids, train=False)
    out = explain.exact_jit(model, variables["params"], ids)
    by_ngrams, by_tokens, windows = sums(out)
    np.testing.assert_allclose(by_ngrams, logits, atol=1e-5)
    np.testing.assert_allclose(by_tokens, windows, atol=1e-5)
    np.testing.assert_allclose(out["logits"][3], variables["params"]["head"]["bias"], atol=1e-6)  # the empty input


def test_kims_dropout_scaling_scales_every_contribution():
    model, variables = random_model(dropout_scaling="inverted")
    inverted = explain.exact(model, variables["params"], jnp.asarray(ids_batch()))
    kim_model, variables = random_model(dropout_scaling="kim")
    kim = explain.exact(kim_model, variables["params"], jnp.asarray(ids_batch()))
    for width in inverted["windows"]:
        np.testing.assert_allclose(kim["windows"][width], 0.5 * inverted["windows"][width], atol=1e-6)


def test_a_hand_computed_model():
    """One filter of width 1 on 1-d embeddings, two classes: pad 0, <unk> 0.5, 'good' 2.0, 'bad' -1.0."""
    model = TextCNN(vocab_size=4, num_classes=2, embed_dim=1, windows=(1,), maps=1, dropout=0.0)
    params = {"embed": {"embedding": jnp.array([[0.0], [0.5], [2.0], [-1.0]])},
              "bank": {"conv_w1": {"kernel": jnp.array([[[1.0]]]), "bias": jnp.array([0.1])}},
              "head": {"kernel": jnp.array([[1.0, -1.0]]), "bias": jnp.array([0.2, 0.0])}}
    ids = jnp.array([[2, 3, 1, 0]])  # good bad <unk>: h = relu(x + 0.1) = 2.1, 0, 0.6; the max is 'good'
    out = explain.exact(model, params, ids)
    np.testing.assert_allclose(out["logits"], [[2.3, -2.1]], atol=1e-6)
    np.testing.assert_allclose(out["windows"][1][0], [[2.1, -2.1], [0, 0], [0, 0], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(out["tokens"][0, 0], [2.0, -2.0], atol=1e-6)  # x * kernel
    np.testing.assert_allclose(out["filter_bias"][0], [0.1, -0.1], atol=1e-6)  # the filter's own bias
    record = explain.records(model, {"params": params}, np.asarray(ids), ["good bad zzz"],
                             [["good", "bad", "zzz"]], ["pos", "neg"])[0]
    assert record["label"] == "pos" and record["method"] == "exact"
    assert record["ngrams"] == [{"start": 0, "end": 1, "tokens": ["good"],
                                 "contributions": {"pos": pytest.approx(2.1), "neg": pytest.approx(-2.1)}}]


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_the_padding_length_of_the_row_changes_nothing():
    model, variables = random_model(pooling="max")
    short = ids_batch()
    long = np.concatenate([short, np.zeros((4, 30), np.int32)], axis=1)
    a = explain.exact_jit(model, variables["params"], jnp.asarray(short))
    b = explain.exact_jit(model, variables["params"], jnp.asarray(long))
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-5)
    for width, contrib in a["windows"].items():
        np.testing.assert_allclose(b["windows"][width][:, : contrib.shape[1]], contrib, atol=1e-5)
        assert not np.any(b["windows"][width][:, contrib.shape[1]:])


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_integrated_gradients_error_shrinks_with_the_steps():
    model, variables = random_model(hidden=(7,))
    ids = jnp.asarray(ids_batch())
    logits = model.apply(variables, ids, train=False)
    errors = []
    for steps in (4, 16, 64):
        out = explain.integrated_gradients(model, variables, ids, steps)
        np.testing.assert_allclose(out["logits"], logits, atol=1e-5)
        errors.append(float(jnp.abs(out["bias"] + out["tokens"].sum(1) - logits).max()))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02, errors


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("explain")
    files = write_splits(root / "data")
    argv = ["train", "--workdir", str(root / "w"), "--embed-dim", "8", "--maps", "6", "--epochs", "3",
            "--batch-size", "20", "--devices", "1", "--no-progress", "--no-tensorboard", "--no-plots"]
    for name, path in files.items():
        argv += [f"--{name.replace('_', '-')}", path]
    assert cli.main(argv) == 0
    return root / "w"


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_a_trained_model_explained_from_the_command_line(trained, capsys, tmp_path):
    texts = ["the movie was great", "", "boring", "a dull plot and awful acting but a lovely story"]
    assert cli.main(["explain", "--workdir", str(trained), *texts, "--html", str(tmp_path / "e.html")]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert cli.main(["predict", "--workdir", str(trained), *texts]) == 0
    predicted = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for r, p in zip(records, predicted, strict=True):
        assert r["label"] == p["label"] and r["method"] == "exact"
        for c, logit in r["logits"].items():
            assert r["bias"][c] + sum(g["contributions"][c] for g in r["ngrams"]) == pytest.approx(logit, abs=1e-5)
            assert r["probabilities"][c] == pytest.approx(p["probabilities"][c], abs=1e-5)
    assert records[1]["ngrams"] == [] and records[1]["tokens"] == []
    assert records[0]["tokens"] == ["the", "movie", "was", "great"]
    page = (tmp_path / "e.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "great" in page and "http" not in page  # no external assets


def test_text_format_marks_the_deciding_ngrams():
    record = {"label": "pos", "probabilities": {"pos": 0.9, "neg": 0.1},
              "token_contributions": [{"position": p, "token": w, "contributions": {}}
                                      for p, w in [(4, "a"), (5, "good"), (6, "film")]],
              "ngrams": [{"start": 5, "end": 6, "contributions": {"pos": 1.0}}]}
    assert text_line(record) == "pos (0.900) | a [[good]] film"
    assert "\x1b[1;32mgood\x1b[0m" in text_line(record, colour=True)
    assert "(no tokens)" in html_page([{**record, "text": "", "token_contributions": [], "bias": {"pos": 0, "neg": 0},
                                        "method": "exact"}], ["pos", "neg"])


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
@pytest.mark.parametrize("variant", ["static", "multichannel"])
def test_integrated_gradients_reach_a_frozen_table(variant):
    """A static table sits behind stop_gradient in the model; its tokens still get their attributions."""
    model, variables = random_model(variant=variant, hidden=(7,))
    ids = jnp.asarray(ids_batch())
    out = explain.integrated_gradients(model, variables, ids, 64)
    logits = model.apply(variables, ids, train=False)
    assert float(jnp.abs(out["tokens"][0]).max()) > 1e-3
    assert float(jnp.abs(out["bias"] + out["tokens"].sum(1) - logits).max()) < 0.02


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_filters_account_for_every_logit_over_a_split(trained, capsys, tmp_path):
    from jaxcnn.predict import Predictor

    predictor = Predictor.from_workdir(trained)
    texts, _ = predictor.split("test")
    report = predictor.filters(texts, top=10**6)  # every n-gram: the class totals then add up to the logits
    records = predictor.explain(texts)
    for c in predictor.label_names:
        total = sum(g["contribution"] for g in report["classes"][c])
        assert total == pytest.approx(sum(r["logits"][c] - r["bias"][c] for r in records), abs=1e-3)
    assert len(report["filters"]) == 3 * 6  # widths 3, 4, 5 x 6 maps
    assert cli.main(["filters", "--workdir", str(trained), "--top", "2", "--out", str(tmp_path / "f")]) == 0
    out = json.loads(capsys.readouterr().out)
    for f in out["filters"]:
        activations = [g["activation"] for g in f["top"]]
        assert len(activations) <= 2 and activations == sorted(activations, reverse=True)
    assert (tmp_path / "f.md").read_text(encoding="utf-8").startswith("# What the filters learned")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_explain_leaves_the_collector_as_it_found_it():
    # `explain` pauses the cyclic collector while it builds records; it must hand back the state it was given.
    import gc

    from jaxcnn import explain

    was = gc.isenabled()
    try:
        for state in (True, False):
            (gc.enable if state else gc.disable)()
            with explain.collector_paused():
                assert not gc.isenabled()
                with explain.collector_paused():
                    pass
                assert not gc.isenabled()
            assert gc.isenabled() is state
        gc.enable()
        try:
            with explain.collector_paused():
                raise ValueError
        except ValueError:
            pass
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
