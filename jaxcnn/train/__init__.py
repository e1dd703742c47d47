"""The training engine: optimizers, losses, metrics, pure train/eval steps, the program of K members, data
parallelism, checkpoints, the workdir loop.

The ways in (imported on first use, so `import jaxcnn.train.workdir` stays free of jax):
`train_and_evaluate(cfg, workdir, task=..., callbacks=...)` (one member: `jaxcnn train`), `train_members`
(K members), `Member`, `Program`, `Run`, `Callback`.
"""

import importlib

_EXPORTS = {"train_and_evaluate": "trainer", "train_members": "trainer", "member_for": "trainer",
            "Run": "trainer", "Callback": "trainer", "Member": "program", "Program": "program"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"jaxcnn.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'jaxcnn.train' has no attribute {name!r}")
