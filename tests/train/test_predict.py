"""Prediction trims each length-sorted batch to its longest sentence: the outputs must not change."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxcnn import configs
from jaxcnn.predict import Predictor
from jaxcnn.train.steps import predict_step
from jaxcnn.train.trainer import train_and_evaluate
from tests.train.helpers import synthetic_sentences, write_splits


@pytest.mark.parametrize("pooling", ["max", "kmax"])
def test_trimmed_batches_give_the_full_length_outputs(tmp_path, pooling):
    files = write_splits(tmp_path / "data")
    cfg = configs.tiny().replace(dataset=None, **files, epochs=1, devices=1, pooling=pooling, k=2)
    train_and_evaluate(cfg, tmp_path / "w")
    p = Predictor.from_workdir(tmp_path / "w")
    texts = synthetic_sentences(37, seed=5)[0] + ["", "good", "a " * 40]
    trimmed = p.predict_proba(texts, batch_size=8)
    program = p.program
    state = jax.tree.map(lambda x: x[0], program.state)
    full = jax.nn.softmax(predict_step(state, {"ids": program.data.encoder.encode(texts).ids}), axis=-1)
    np.testing.assert_allclose(trimmed, full, atol=1e-6)
    records = p.predict(texts, batch_size=8)
    assert [r["text"] for r in records] == texts  # input order survives the sort by length
