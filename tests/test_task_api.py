"""The Task API is the whole contract: a task written from scratch against `jaxcnn.tasks.api.Task` (its own data,
model and inputs) trains, resumes, is evaluated and predicts through jaxcnn's engine and predictor."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxcnn
from jaxcnn import configs
from jaxcnn.tasks import ImageData, ImageTask, Task, TaskData, TextData, TextTask
from jaxcnn.tasks.api import Examples
from jaxcnn.train import train_and_evaluate

LENGTH = 6


class MajorityData:
    """Sequences of 0/1 digits; the class is whether ones are the majority."""

    def __init__(self, arrays):
        self.label_names = ["zeros", "ones"]
        self.arrays = arrays

    @property
    def num_classes(self) -> int:
        return 2

    def pretrained(self, seed):
        return None

    def meta(self):
        return {"length": LENGTH}

    def describe(self, rows):
        return f"{LENGTH} digits"

    def summary(self):
        return {"length": LENGTH}


class MajorityTask:
    """A task that shares nothing with the text or image ones."""

    name = "majority"
    input_name = "digits"

    def load(self, cfg):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 2, (300, LENGTH)).astype(np.int32)
        y = (x.sum(1) * 2 > LENGTH).astype(np.int32)
        return Examples(x, y, ["zeros", "ones"], {"train": np.arange(300)}, "holdout", "generated")

    def prepare(self, cfg, examples, splits, seeds):
        return MajorityData({"digits": examples.inputs, "label": examples.labels})

    def restore(self, cfg, meta):
        return MajorityData({})

    def _model(self):
        return nn.Sequential([nn.Dense(16), nn.relu, nn.Dense(2)])

    def init(self, cfg, data, key, pretrained):
        return self._model().init(key, jnp.zeros((1, LENGTH)))["params"], {}

    def forward(self, cfg, data, *, dropout=None):
        model = self._model()

        def forward(variables, batch, *, train, rng, mutable, aux=None):
            return model.apply(variables, batch["digits"].astype(jnp.float32))

        return forward

    def trainable(self, cfg, params):
        return jax.tree.map(lambda _: True, params)

    def embedding_tables(self, cfg, params):
        return (), ()

    def inference_aux(self, cfg, params):
        return None

    def batches(self, cfg, data, inputs, batch_size):
        inputs = np.asarray(inputs, np.int32).reshape(-1, LENGTH)
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size]
            batch = np.zeros((batch_size, LENGTH), np.int32)
            batch[: len(chunk)] = chunk
            yield np.arange(start, start + len(chunk)), {"digits": batch}

    def read_labelled(self, cfg, data, path, fmt):
        raise NotImplementedError


def test_the_tasks_implement_the_protocol():
    assert isinstance(TextTask(), Task) and isinstance(ImageTask(), Task) and isinstance(MajorityTask(), Task)
    assert isinstance(TextData(None, ["a"], {}), TaskData)
    assert isinstance(ImageData(["a"], {}, (2, 2, 1), "here"), TaskData)


def test_a_task_of_your_own_trains_resumes_and_predicts(tmp_path):
    cfg = configs.tiny().replace(optimizer="adam", lr=0.05, max_norm=None, batch_size=32, epochs=3, devices=1)
    task = MajorityTask()
    first = train_and_evaluate(cfg, tmp_path / "w", task=task)
    assert first["epochs"] == 3 and first["train_examples"] + first["dev_examples"] == 240  # 20% held out: test
    summary = train_and_evaluate(cfg.replace(epochs=12), tmp_path / "w", task=task)  # resumes at epoch 3
    assert summary["epochs"] == 12 and summary["test_accuracy"] > 0.8
    assert json.loads((tmp_path / "w" / "program.json").read_text())["task"] == "majority"
    model = jaxcnn.load(tmp_path / "w", task=task)
    records = model.predict([[1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 1, 0]])
    assert [r["label"] for r in records] == ["ones", "zeros"]
    assert model.evaluate_split("test")["accuracy"] == summary["test_accuracy"]
