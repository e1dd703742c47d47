"""NumPy batch iterators with fixed shapes (one compiled step for every batch).

Training batches are reshuffled every epoch from (seed, epoch), so a resumed run sees the same order. Evaluation
batches never drop an example: the last one is padded with zero rows and every batch carries `mask` (<bool>[B],
True on real examples), so metrics summed under the mask are exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from jaxcnn.errors import ConfigError

Batch = dict[str, np.ndarray]


def _size(arrays: Mapping[str, np.ndarray], batch_size: int) -> int:
    if batch_size < 1:
        raise ConfigError(f"--batch-size: must be at least 1, got {batch_size}")
    if "mask" in arrays:
        raise ValueError("'mask' is reserved for the padding mask that batching adds")
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"arrays must share their first dimension, got {sizes}")
    return next(iter(sizes.values()))


def num_batches(n: int, batch_size: int, drop_remainder: bool) -> int:
    """How many batches `train_batches`/`eval_batches` yield for n examples."""
    return n // batch_size if drop_remainder else -(-n // batch_size)


def _take(arrays: Mapping[str, np.ndarray], idx: np.ndarray, batch_size: int, with_mask: bool) -> Batch:
    batch = {k: v[idx] for k, v in arrays.items()}
    if not with_mask:
        return batch
    short = batch_size - len(idx)
    if short:
        batch = {k: np.concatenate([v, np.zeros((short, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
    batch["mask"] = np.arange(batch_size) < len(idx)
    return batch


def train_batches(arrays: Mapping[str, np.ndarray], batch_size: int, seed: int, epoch: int,
                  drop_remainder: bool = True) -> Iterator[Batch]:
    """One epoch of shuffled batches of `batch_size` rows.

    With `drop_remainder` (the default) the last n % batch_size examples of this epoch's order are left out (a
    different few each epoch); otherwise the last batch is zero-padded and every batch has `mask` <bool>[B].
    """
    n = _size(arrays, batch_size)
    if drop_remainder and n < batch_size:
        raise ConfigError(f"--batch-size: {batch_size} is more than the {n} training examples, so an epoch would "
                          "have no batch; lower it")
    order = np.random.default_rng([seed, epoch]).permutation(n)
    for b in range(num_batches(n, batch_size, drop_remainder)):
        yield _take(arrays, order[b * batch_size:(b + 1) * batch_size], batch_size, not drop_remainder)


def eval_batches(arrays: Mapping[str, np.ndarray], batch_size: int) -> Iterator[Batch]:
    """Batches in order, the last zero-padded; every batch has `mask` <bool>[B]."""
    n = _size(arrays, batch_size)
    for start in range(0, n, batch_size):
        yield _take(arrays, np.arange(start, min(start + batch_size, n)), batch_size, True)
