import collections

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxcnn.data.registry import load_files, load_splits, resolve_protocol
from jaxcnn.data.splits import dev_split, kfold_indices
from jaxcnn.errors import ConfigError


@given(n=st.integers(2, 300), k=st.integers(2, 12), seed=st.integers(0, 2**31), stratified=st.booleans())
def test_kfold_is_a_balanced_partition(n, k, seed, stratified):
    k = min(k, n)
    labels = np.arange(n) % 3 if stratified else None
    folds = kfold_indices(n, k, seed, labels)
    assert len(folds) == k
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(n))  # each example in one test fold
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert all((np.diff(f) > 0).all() for f in folds)
    again = kfold_indices(n, k, seed, labels)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))


def test_stratified_folds_keep_class_proportions():
    labels = np.array([0] * 900 + [1] * 100)
    for fold in kfold_indices(1000, 10, seed=0, labels=labels):
        assert collections.Counter(labels[fold].tolist()) == {0: 90, 1: 10}
    plain = [collections.Counter(labels[f].tolist())[1] for f in kfold_indices(1000, 10, seed=0)]
    assert sum(plain) == 100 and len(set(plain)) > 1  # unstratified folds vary


@given(n=st.integers(20, 500), fraction=st.floats(0.05, 0.5), seed=st.integers(0, 1000))
def test_dev_split_sizes_and_disjointness(n, fraction, seed):
    train, dev = dev_split(n, fraction, seed)
    assert len(dev) == int(np.floor(n * fraction + 1e-9))
    np.testing.assert_array_equal(np.sort(np.concatenate([train, dev])), np.arange(n))


def test_stratified_dev_split():
    labels = np.array([0] * 500 + [1] * 50 + [2] * 450)
    train, dev = dev_split(1000, 0.1, seed=3, labels=labels)
    assert collections.Counter(labels[dev].tolist()) == {0: 50, 1: 5, 2: 45}
    assert set(train) | set(dev) == set(range(1000)) and not set(train) & set(dev)


@pytest.mark.parametrize("call, message", [
    (lambda: kfold_indices(5, 6, 0), "--folds"),
    (lambda: kfold_indices(5, 1, 0), "--folds"),
    (lambda: dev_split(10, 0.0, 0), "--dev-fraction"),
    (lambda: dev_split(5, 0.1, 0), "empty dev or train set"),
])
def test_bad_split_arguments(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_cv_protocol_on_mr(data_dir):
    mr = load_splits("mr", data_dir)
    everything = collections.Counter(mr["train"]["text"][:])
    seen = []
    for fold in range(10):
        dsd = resolve_protocol(mr, "cv", fold=fold, seed=5)
        assert list(dsd) == ["train", "dev", "test"]
        sizes = {s: len(d) for s, d in dsd.items()}
        assert sizes["test"] in (1066, 1067) and sum(sizes.values()) == 10662
        assert sizes["dev"] == int(0.1 * (10662 - sizes["test"]))
        seen += dsd["test"]["text"][:]
        pooled = collections.Counter(t for s in ("train", "dev", "test") for t in dsd[s]["text"][:])
        assert pooled == everything  # train, dev and test partition the set
    assert sorted(seen) == sorted(mr["train"]["text"][:])  # every sentence in exactly one test fold
    a = resolve_protocol(mr, "cv", fold=3, seed=5)
    b = resolve_protocol(mr, "cv", fold=3, seed=5)
    c = resolve_protocol(mr, "cv", fold=3, seed=6)
    assert a["dev"]["text"][:] == b["dev"]["text"][:] and a["test"]["text"][:] != c["test"]["text"][:]


def test_official_and_train_test_protocols(data_dir):
    sst = load_splits("sst2", data_dir)
    assert {s: len(d) for s, d in resolve_protocol(sst, "official").items()} == {"train": 6920, "dev": 872,
                                                                                  "test": 1821}
    trec = load_splits("trec", data_dir)
    dsd = resolve_protocol(trec, "train_test", seed=0, stratify=True)
    assert {s: len(d) for s, d in dsd.items()} == {"train": 4907, "dev": 545, "test": 500}
    assert not set(dsd["dev"]["text"][:]) - set(trec["train"]["text"][:])
    with pytest.raises(ConfigError, match="protocol official: needs train, dev and test"):
        resolve_protocol(trec, "official")
    with pytest.raises(ConfigError, match="protocol train_test: needs exactly train and test"):
        resolve_protocol(sst, "train_test")
    with pytest.raises(ConfigError, match="unknown data protocol"):
        resolve_protocol(sst, "leave_one_out")


def test_holdout_carves_a_fixed_test_set_and_a_seeded_dev_set():
    from jaxcnn.data.splits import protocol_rows

    labels = np.arange(100) % 4
    given = {"train": np.arange(100)}
    a = protocol_rows(given, "holdout", labels=labels, seed=0)
    b = protocol_rows(given, "holdout", labels=labels, seed=1)
    assert [len(a[s]) for s in ("train", "dev", "test")] == [72, 8, 20]
    np.testing.assert_array_equal(a["test"], b["test"])  # the test set does not move with the seed
    assert not np.array_equal(a["dev"], b["dev"])
    assert np.bincount(labels[a["test"]]).tolist() == [5, 5, 5, 5]  # stratified
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    both = protocol_rows({"train": np.arange(80), "test": np.arange(80, 100)}, "holdout", labels=labels, seed=0)
    np.testing.assert_array_equal(both["test"], np.arange(80, 100))  # a given test split is kept


def test_cv_pools_all_given_splits_and_checks_the_fold(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("".join(f"{i % 2} sentence {i}\n" for i in range(40)), encoding="utf-8")
    test = tmp_path / "test.txt"
    test.write_text("".join(f"{i % 2} other {i}\n" for i in range(10)), encoding="utf-8")
    dsd = resolve_protocol(load_files(train, test_file=test), "cv", fold=0, folds=5, stratify=True)
    assert sum(len(d) for d in dsd.values()) == 50 and len(dsd["test"]) == 10
    assert collections.Counter(dsd["test"]["label"][:]) == {0: 5, 1: 5}
    with pytest.raises(ConfigError, match=r"--fold: must be in 0..4"):
        resolve_protocol(load_files(train), "cv", fold=5, folds=5)
