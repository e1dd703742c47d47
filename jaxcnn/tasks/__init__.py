"""Tasks: how a config becomes data, a model and its initial variables.

A task module has `prepare(cfg) -> data` (data has `splits`, `label_names`, `num_classes`, `meta()`,
`describe()`, `summary()`) and `build(cfg, data, key) -> (forward, params, model_state, trainable)`, where
`forward(variables, batch, *, train, rng, mutable)` is what the engine's steps call.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from jaxcnn.errors import ConfigError

TASKS = ("text", "image")


def get(name: str) -> ModuleType:
    if name not in TASKS:
        raise ConfigError(f"--task: unknown task {name!r} (choices: {', '.join(TASKS)})")
    return importlib.import_module(f"jaxcnn.tasks.{name}")
