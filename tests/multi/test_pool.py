"""The shared pool: members' rows are the sentences `jaxcnn train` would use, and one vocabulary serves all."""

from __future__ import annotations

import numpy as np
import pytest

from jaxcnn import configs
from jaxcnn.errors import ConfigError
from jaxcnn.experiments import pool as pool_lib
from jaxcnn.experiments.programs import parse_seeds, protocol_members
from jaxcnn.tasks import text as text_task
from tests.train.helpers import write_kim, synthetic_sentences, write_splits


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    splits = write_splits(folder / "three")
    return {"cv": {"train_file": str(write_kim(folder / "all.txt", *synthetic_sentences(90, 0)))},
            "train_test": {"train_file": splits["train_file"], "test_file": splits["test_file"]},
            "official": splits}


@pytest.mark.parametrize("protocol", ["cv", "train_test", "official"])
@pytest.mark.parametrize("stratify", [False, True])
def test_rows_hold_the_sentences_of_the_normal_split(files, protocol, stratify):
    cfg = configs.tiny().replace(dataset=None, folds=4, fold=2, seed=5, stratify=stratify, **files[protocol])
    source = pool_lib.load_source(cfg)
    assert source.protocol == protocol
    rows = pool_lib.split_rows(source, cfg)
    dsd, _, _ = text_task.load_splits(cfg)
    for split in ("train", "dev", "test"):
        assert [source.texts[i] for i in rows[split]] == dsd[split][:]["text"], split
        np.testing.assert_array_equal(source.labels[rows[split]], dsd[split][:]["label"])


def test_one_member_pool_is_the_normal_trainers_data(files):
    cfg = configs.tiny().replace(dataset=None, folds=3, fold=1, **files["cv"])
    source = pool_lib.load_source(cfg)
    rows = pool_lib.split_rows(source, cfg)
    pool = pool_lib.build_pool(cfg, source, [rows["train"]], [cfg.train.seed])
    normal = text_task.prepare(cfg)
    assert pool.data.encoder.vocab.itos == normal.encoder.vocab.itos
    mine = pool.member_data(rows["train"], rows["dev"], rows["test"], cfg.train.seed)
    for split in ("train", "dev", "test"):
        np.testing.assert_array_equal(mine.splits[split]["ids"], normal.splits[split]["ids"])


def test_cv_pool_vocabulary_covers_every_fold(files):
    cfg = configs.tiny().replace(dataset=None, folds=3, **files["cv"])
    source = pool_lib.load_source(cfg)
    members = protocol_members(cfg, source, [0, 1])
    assert [(m.fold, m.seed) for m in members] == [(f, s) for f in range(3) for s in (0, 1)]
    pool = pool_lib.build_pool(cfg, source, [m.train for m in members], [m.seed for m in members])
    unk = pool.data.encoder.vocab.unk_id
    assert not (pool.data.splits["pool"]["ids"] == unk).any()  # the union of the folds' training parts is all
    tests = np.concatenate([m.test for m in members if m.seed == 0])
    assert sorted(tests.tolist()) == list(range(len(source.texts)))  # each example tested exactly once


def test_bootstrap_resamples_with_replacement_per_seed():
    rows = np.arange(100, 200, dtype=np.int32)
    a, b = pool_lib.bootstrap(rows, 0), pool_lib.bootstrap(rows, 1)
    assert len(a) == 100 and set(a.tolist()) <= set(rows.tolist())
    assert len(set(a.tolist())) < 100  # some rows repeat (all distinct has probability ~1e-42)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, pool_lib.bootstrap(rows, 0))


def test_seeds_flag():
    assert parse_seeds("3", base=5) == [5, 6, 7]
    assert parse_seeds("0,4,9") == [0, 4, 9]
    for bad in ("x", "0", "1,1"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
