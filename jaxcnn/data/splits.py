"""Seeded k-fold and dev splits over example indices.

Kim drew each sentence's fold with `np.random.randint(0, 10)`, so his folds vary in size; here a seeded permutation
is cut into k folds whose sizes differ by at most one, and every example lands in exactly one test fold. With
`labels`, each class is shuffled and dealt round-robin over the folds (stratified).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxcnn.errors import ConfigError

Seed = int | Sequence[int]


def _grouped_order(n: int, rng: np.random.Generator, labels: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """A random order of range(n); with labels, grouped by class (random within each class)."""
    order = rng.permutation(n)
    if labels is None:
        return order
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
    return order[np.argsort(labels[order], kind="stable")]


def kfold_indices(n: int, k: int, seed: Seed, labels: Sequence[int] | np.ndarray | None = None) -> list[np.ndarray]:
    """Test indices of each of k folds (sorted), a partition of range(n); stratified when `labels` are given."""
    if not 2 <= k <= n:
        raise ConfigError(f"--folds: need 2 <= folds <= {n} (the number of examples), got {k}")
    order = _grouped_order(n, np.random.default_rng(seed), labels)
    # Dealing the class-grouped order round-robin puts ~1/k of every class in each fold.
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % k
    return [np.flatnonzero(fold_of == f) for f in range(k)]


def dev_split(n: int, fraction: float, seed: Seed, labels: Sequence[int] | np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, dev indices), both sorted; floor(n * fraction) examples go to dev, stratified when
    `labels` are given."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"--dev-fraction: must be between 0 and 1, got {fraction}")
    n_dev = int(np.floor(n * fraction + 1e-9))
    if n_dev < 1 or n_dev >= n:
        raise ConfigError(f"--dev-fraction: {fraction} of {n} examples leaves an empty dev or train set")
    order = _grouped_order(n, np.random.default_rng(seed), labels)
    # Systematic sampling: position p is taken when floor((p+1)f) steps up, so each class gives ~f of its members.
    steps = np.floor((np.arange(1, n + 1)) * fraction + 1e-9) - np.floor(np.arange(n) * fraction + 1e-9)
    is_dev = np.zeros(n, dtype=bool)
    is_dev[order[steps > 0]] = True
    return np.flatnonzero(~is_dev), np.flatnonzero(is_dev)
