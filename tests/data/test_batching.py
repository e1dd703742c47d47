import numpy as np
import pytest

from jaxcnn.data.batching import eval_batches, num_batches, train_batches
from jaxcnn.errors import ConfigError

N, L = 23, 6
ARRAYS = {"ids": np.arange(N * L, dtype=np.int32).reshape(N, L) + 1, "labels": np.arange(N, dtype=np.int32),
          "lengths": np.full(N, L, np.int32)}


def test_train_batches_fixed_shape_seeded_shuffle_per_epoch():
    batches = list(train_batches(ARRAYS, 5, seed=0, epoch=0))
    assert len(batches) == num_batches(N, 5, True) == 4
    assert all(b["ids"].shape == (5, L) and b["ids"].dtype == np.int32 and set(b) == set(ARRAYS) for b in batches)
    labels = np.concatenate([b["labels"] for b in batches])
    assert len(set(labels.tolist())) == 20  # no example twice in an epoch
    np.testing.assert_array_equal(np.concatenate([b["ids"] for b in batches]), ARRAYS["ids"][labels])  # rows intact
    again = np.concatenate([b["labels"] for b in train_batches(ARRAYS, 5, seed=0, epoch=0)])
    other_epoch = np.concatenate([b["labels"] for b in train_batches(ARRAYS, 5, seed=0, epoch=1)])
    other_seed = np.concatenate([b["labels"] for b in train_batches(ARRAYS, 5, seed=1, epoch=0)])
    np.testing.assert_array_equal(labels, again)
    assert not np.array_equal(labels, other_epoch) and not np.array_equal(labels, other_seed)


def test_train_batches_without_drop_pad_the_last_batch():
    batches = list(train_batches(ARRAYS, 5, seed=0, epoch=0, drop_remainder=False))
    assert len(batches) == 5 and all(b["mask"].shape == (5,) for b in batches)
    assert [int(b["mask"].sum()) for b in batches] == [5, 5, 5, 5, 3]
    last = batches[-1]
    assert (last["ids"][3:] == 0).all() and (last["ids"][:3] != 0).all()
    real = np.concatenate([b["labels"][b["mask"]] for b in batches])
    assert sorted(real.tolist()) == list(range(N))


def test_eval_batches_keep_order_and_every_example():
    batches = list(eval_batches(ARRAYS, 10))
    assert [b["ids"].shape for b in batches] == [(10, L)] * 3
    assert [int(b["mask"].sum()) for b in batches] == [10, 10, 3]
    np.testing.assert_array_equal(np.concatenate([b["labels"][b["mask"]] for b in batches]), ARRAYS["labels"])
    (only,) = eval_batches(ARRAYS, 64)
    assert only["mask"].sum() == N and only["ids"].shape == (64, L)


def test_batching_errors():
    with pytest.raises(ConfigError, match="--batch-size: 50 is more than the 23 training examples"):
        next(train_batches(ARRAYS, 50, seed=0, epoch=0))
    with pytest.raises(ConfigError, match="--batch-size: must be at least 1"):
        next(eval_batches(ARRAYS, 0))
    with pytest.raises(ValueError, match="share their first dimension"):
        next(eval_batches({"a": np.zeros(3), "b": np.zeros(4)}, 2))
    with pytest.raises(ValueError, match="'mask' is reserved"):
        next(eval_batches({"mask": np.zeros(3)}, 2))
