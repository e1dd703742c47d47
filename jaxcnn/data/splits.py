"""Seeded k-fold and dev splits over example indices.

Kim drew each sentence's fold with `np.random.randint(0, 10)`, so his folds vary in size; here a seeded permutation
is cut into k folds whose sizes differ by at most one, and every example lands in exactly one test fold. With
`labels`, each class is shuffled and dealt round-robin over the folds (stratified).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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


# ----------------------------------------------------------------------------------------------------------------
# Protocols: from the splits a dataset comes with to exactly train, dev and test. The one implementation; the
# registry's `resolve_protocol`, the text and image tasks, and every member of a many-model program use it.

PROTOCOLS = ("cv", "official", "train_test", "holdout")
SPLITS = ("train", "dev", "test")
HOLDOUT_TEST_FRACTION = 0.2
HOLDOUT_TEST_SEED = 0  # a carved test set must not move with the run's --seed, or runs would not be comparable


def protocol_rows(given: Mapping[str, np.ndarray], protocol: str, *, labels: np.ndarray | None = None,
                  fold: int = 0, folds: int = 10, seed: Seed = 0, dev_fraction: float = 0.1,
                  stratify: bool = False) -> dict[str, np.ndarray]:
    """The train, dev and test rows of a pool of examples under a protocol.

    Args:
      given: {split: <int>[rows]} the pool rows of each split the dataset comes with ("train", "dev", "test").
      protocol:
        "cv": every given split pooled (in train, dev, test order); test = fold `fold` of a seeded `folds`-fold
          partition (`kfold_indices` with `seed`), dev = `dev_fraction` of the rest (`dev_split` seeded with
          (seed, fold)). Kim's protocol for MR, Subj, CR and MPQA.
        "official": train, dev and test as given (all three required). SST.
        "train_test": train and test as given (no dev); dev = `dev_fraction` of train (seeded with `seed`). TREC.
        "holdout": a missing test split is a fixed, stratified 20% of train (seed 0 whatever `seed`), a missing
          dev split `dev_fraction` of what is left (seeded with `seed`). The image sets.
      labels: <int>[pool size] every row's class; needed by `stratify` and by "holdout".
      stratify: keep class proportions in folds and dev sets.
    Returns:
      {"train", "dev", "test": <int32>[rows]} in the order the protocol defines (a training run's data order
      permutes the train rows, so this order is part of the result).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown data protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    present = [s for s in SPLITS if s in given]
    rows = {s: np.asarray(given[s], np.int64) for s in present}

    def labels_of(r: np.ndarray, always: bool = False) -> np.ndarray | None:
        if not (stratify or always):
            return None
        if labels is None:
            raise ValueError("protocol_rows: stratified splits need the pool's labels")
        return np.asarray(labels)[r]

    if protocol == "official":
        if present != list(SPLITS):
            raise ConfigError(f"protocol official: needs train, dev and test splits, found {', '.join(present)}")
        out = rows
    elif protocol == "train_test":
        if present != ["train", "test"]:
            raise ConfigError(f"protocol train_test: needs exactly train and test splits, found "
                              f"{', '.join(present)} (use 'official' when a dev split is given)")
        train, dev = dev_split(len(rows["train"]), dev_fraction, seed, labels_of(rows["train"]))
        out = {"train": rows["train"][train], "dev": rows["train"][dev], "test": rows["test"]}
    elif protocol == "holdout":
        if "train" not in rows:
            raise ConfigError("protocol holdout: needs a train split")
        out = dict(rows)
        if "test" not in out:
            rest, test = dev_split(len(out["train"]), HOLDOUT_TEST_FRACTION, HOLDOUT_TEST_SEED,
                                   labels_of(out["train"], always=True))
            out["train"], out["test"] = out["train"][rest], out["train"][test]
        if "dev" not in out:
            train, dev = dev_split(len(out["train"]), dev_fraction, seed, labels_of(out["train"]))
            out["train"], out["dev"] = out["train"][train], out["train"][dev]
    else:
        if not present:
            raise ConfigError("protocol cv: no train, dev or test split to cross-validate over")
        if not 0 <= fold < folds:
            raise ConfigError(f"--fold: must be in 0..{folds - 1}, got {fold}")
        pool = np.concatenate([rows[s] for s in present])
        test = kfold_indices(len(pool), folds, seed, labels_of(pool))[fold]
        rest = np.setdiff1d(np.arange(len(pool)), test)
        train, dev = dev_split(len(rest), dev_fraction, _with_fold(seed, fold), labels_of(pool[rest]))
        out = {"train": pool[rest[train]], "dev": pool[rest[dev]], "test": pool[test]}
    return {s: np.asarray(out[s], np.int32) for s in SPLITS}


def _with_fold(seed: Seed, fold: int) -> list[int]:
    return [*([seed] if isinstance(seed, int) else list(seed)), fold]
