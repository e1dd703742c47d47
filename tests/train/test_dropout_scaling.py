"""`--dropout-scaling kim`: Kim's Theano convention (no rescaling in training, features x (1-p) at test time)
against Flax's inverted dropout, in closed form, and through the engine."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxcnn import tasks
from jaxcnn.errors import ConfigError
from jaxcnn.models.text_cnn import TextCNN
from jaxcnn.train.program import Program
from jaxcnn.train.trainer import train_and_evaluate
from tests.multi.common import tiny_members
from tests.train.helpers import synthetic_sentences, write_kim, write_splits
from tests.train.test_engine import tiny_cfg


def test_kim_scaling_is_inverted_dropout_times_keep_probability():
    p = 0.3
    models = {s: TextCNN(vocab_size=20, num_classes=3, embed_dim=6, windows=(2, 3), maps=4, dropout=p,
                         dropout_scaling=s) for s in ("inverted", "kim")}
    ids = jax.random.randint(jax.random.key(1), (5, 9), 1, 20)
    params = models["kim"].init(jax.random.key(0), ids)["params"]
    rng = np.random.default_rng(2)  # NumPy's draws: jax.random's, op by op, compiled a program per leaf shape
    params = jax.tree.map(lambda a: a + 0.3 * rng.standard_normal(a.shape, np.float32), params)  # head != 0
    keys = jax.random.split(jax.random.key(3), 5)
    for train in (False, True):
        out = {s: m.apply({"params": params}, ids, train=train, dropout_keys=keys) for s, m in models.items()}
        b = params["head"]["bias"]
        # Same masks (same keys): Kim's features are the inverted ones x (1 - p), in training and at test time.
        np.testing.assert_allclose(out["kim"] - b, (1 - p) * (out["inverted"] - b), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dropout_scaling"):
        models["kim"].clone(dropout_scaling="theano").apply({"params": params}, ids)


def test_kim_scaling_trains_and_evaluates_end_to_end(tmp_path):
    files = write_splits(tmp_path / "data")
    summary = train_and_evaluate(tiny_cfg(files, dropout_scaling="kim", epochs=6, optimizer="adam", lr=0.01),
                                 tmp_path / "w")
    assert summary["test_accuracy"] >= 0.9  # as test_engine's inverted-dropout run of the same task
    saved = json.loads((tmp_path / "w" / "config.json").read_text())
    assert saved["model"]["dropout_scaling"] == "kim"


def test_a_searched_dropout_rate_refuses_kim_scaling(tmp_path):
    path = tmp_path / "all.txt"
    write_kim(path, *synthetic_sentences(60, 0))
    cfg, members, pool = tiny_members(str(path), k=2, dropout_scaling="kim")
    members = [dataclasses.replace(m, hparams={"dropout": r}) for m, r in zip(members, (0.2, 0.5))]
    with pytest.raises(ConfigError, match="--dropout-scaling kim: cannot vary --dropout"):
        Program(cfg, tasks.get("text"), pool, members)
