"""Shared set-up of the multi-member tests: a small learnable text set, members over it, and a short training."""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from jaxcnn import configs, tasks
from jaxcnn.train.parallel import to_host
from jaxcnn.train.program import Program
from jaxcnn.train.trainer import member_for
from tests.train.helpers import synthetic_sentences, write_kim


def write_pool_file(folder: pathlib.Path, n: int = 240) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return str(write_kim(folder / "all.txt", *synthetic_sentences(n, 0)))


def tiny_config(data_file: str, **overrides):
    """A CV set (one file) and a model that trains in a second; Adam learns it in a few epochs. One filter width:
    what these tests compare (members against each other and against single runs) does not depend on it, and the
    many programs they compile are smaller."""
    values = {"dataset": None, "train_file": data_file, "folds": 3, "optimizer": "adam", "lr": 0.01,
              "steps_per_dispatch": 4, "windows": (2,), **overrides}
    return configs.tiny().replace(**values)


def tiny_members(data_file: str, k: int = 3, **overrides):
    """(cfg, k members: fold i % 3 with seed 10 + i, their prepared data)."""
    cfg = tiny_config(data_file, **overrides)
    task = tasks.get("text")
    examples = task.load(cfg)
    members = [member_for(cfg, examples, seed=10 + i, fold=i % cfg.data.folds, name=f"m{i}") for i in range(k)]
    data = task.prepare(cfg, examples, [m.rows() for m in members], [m.seed for m in members])
    return cfg, members, data


def train_program(cfg, members, data, *, devices: int | None = 1, epochs: int = 2, chunk="auto") -> Program:
    program = Program(cfg.replace(devices=devices), tasks.get("text"), data, members, chunk=chunk)
    for epoch in range(1, epochs + 1):
        _, bad = program.train_epoch(epoch, [True] * len(members))
        assert (bad == -1).all()
    return program


def flat_params(program: Program) -> dict[str, np.ndarray]:
    """{"bank/conv_w2/kernel": <float32>[K, ...], ...} on the host (gathered across processes)."""
    leaves = jax.tree_util.tree_leaves_with_path(to_host(program.state.params))
    return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v) for path, v in leaves}
