"""One protocol implementation for every run: members' rows are the sentences of the normal split, and one
vocabulary serves all members of a program."""

from __future__ import annotations

import numpy as np
import pytest

from jaxcnn import configs, data as data_lib, tasks
from jaxcnn.errors import ConfigError
from jaxcnn.experiments.ensemble import bootstrap
from jaxcnn.experiments.programs import parse_seeds, protocol_members
from jaxcnn.train.trainer import member_for
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
def test_rows_hold_the_sentences_of_the_registrys_split(files, protocol, stratify):
    cfg = configs.tiny().replace(dataset=None, folds=4, fold=2, seed=5, stratify=stratify, **files[protocol])
    examples = tasks.get("text").load(cfg)
    assert examples.protocol == protocol
    rows = examples.rows(cfg)
    d = cfg.data
    loaded = data_lib.load_files(d.train_file, d.dev_file, d.test_file)
    dsd = data_lib.resolve_protocol(loaded, protocol, fold=2, folds=4, seed=5, stratify=stratify)
    for split in ("train", "dev", "test"):
        assert examples.take(rows[split]) == dsd[split][:]["text"], split
        np.testing.assert_array_equal(examples.labels[rows[split]], dsd[split][:]["label"])
    assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(len(examples)))


def test_one_members_vocabulary_is_fitted_on_its_training_split(files):
    cfg = configs.tiny().replace(dataset=None, folds=3, fold=1, **files["cv"])
    task = tasks.get("text")
    examples = task.load(cfg)
    member = member_for(cfg, examples)
    data = task.prepare(cfg, examples, [member.rows()], [member.seed])
    alone = data_lib.TextEncoder.fit(examples.take(member.train), "kim", pad_width=max(cfg.model.windows) - 1)
    assert data.encoder.vocab.itos == alone.vocab.itos and data.encoder.length == alone.length
    np.testing.assert_array_equal(data.arrays["ids"][member.test], alone.encode(examples.take(member.test)).ids)


def test_cv_pool_vocabulary_covers_every_fold(files):
    cfg = configs.tiny().replace(dataset=None, folds=3, **files["cv"])
    task = tasks.get("text")
    examples = task.load(cfg)
    members = protocol_members(cfg, examples, [0, 1])
    assert [(m.fold, m.seed) for m in members] == [(f, s) for f in range(3) for s in (0, 1)]
    data = task.prepare(cfg, examples, [m.rows() for m in members], [m.seed for m in members])
    unk = data.encoder.vocab.unk_id
    assert not (data.arrays["ids"] == unk).any()  # the union of the folds' training parts is all
    tests = np.concatenate([m.test for m in members if m.seed == 0])
    assert sorted(tests.tolist()) == list(range(len(examples)))  # each example tested exactly once


def test_bootstrap_resamples_with_replacement_per_seed():
    rows = np.arange(100, 200, dtype=np.int32)
    a, b = bootstrap(rows, 0), bootstrap(rows, 1)
    assert len(a) == 100 and set(a.tolist()) <= set(rows.tolist())
    assert len(set(a.tolist())) < 100  # some rows repeat (all distinct has probability ~1e-42)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, bootstrap(rows, 0))


def test_seeds_flag():
    assert parse_seeds("3", base=5) == [5, 6, 7]
    assert parse_seeds("0,4,9") == [0, 4, 9]
    for bad in ("x", "0", "1,1"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)
