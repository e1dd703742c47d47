"""The benchmark sets of /work/shared/data through the registry, offline."""

import collections
import re
import time

import pytest

from jaxcnn.data.registry import BUNDLED, DATASETS, TREC_COARSE, TREC_FINE, find, load_splits, locate
from jaxcnn.errors import ConfigError, DataError

# Line counts from the data README.
SIZES = {
    "mr": {"train": 10662},
    "sst1": {"train": 8544, "dev": 1101, "test": 2210},
    "sst2": {"train": 6920, "dev": 872, "test": 1821},
    "trec": {"train": 5452, "test": 500},
}
# Every labelled phrase of sst-trees/train.txt, deduplicated on lowercased text: 318,582 nodes -> 156,817 phrases
# (the count sent-conv-torch reports for SST-1); SST-2 keeps the 76,961 non-neutral ones.
SST1_PHRASES, SST2_PHRASES = 156_817, 76_961


def _sizes(dsd):
    return {split: len(ds) for split, ds in dsd.items()}


def _with(tmp_path, data_dir, *names):
    """A data folder holding only some of the benchmark folders (symlinked, not copied)."""
    for name in names:
        (tmp_path / name).symlink_to(data_dir / name)
    return tmp_path


def test_specs_are_consistent():
    assert set(DATASETS) == {"mr", "sst1", "sst2", "subj", "trec", "cr", "mpqa"}
    for key, spec in DATASETS.items():
        assert spec.name == key and spec.num_classes == len(spec.label_names)
        assert spec.protocol in ("cv", "official", "train_test")
        # Kim lowercases every set but TREC, and cleans SST with its own function.
        assert spec.tokenizer == {"sst1": "kim_sst", "sst2": "kim_sst", "trec": "kim_cased"}.get(key, "kim")
        assert spec.hub_id and spec.hub_notes and spec.local_files
    assert DATASETS["trec"].label_names == ("DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM")
    assert hash(DATASETS["mr"])  # frozen and hashable


@pytest.mark.parametrize("name", SIZES)
def test_benchmark_sets_load_offline_with_readme_counts(data_dir, name):
    dsd = load_splits(name, data_dir)
    assert _sizes(dsd) == SIZES[name]
    spec = DATASETS[name]
    for ds in dsd.values():
        assert ds.features["label"].names == list(spec.label_names)
        assert set(ds["label"][:]) == set(range(spec.num_classes))
        assert all(t.strip() for t in ds["text"][:])


def test_data_dir_from_environment(data_dir, monkeypatch):
    monkeypatch.setenv("JAXCNN_DATA_DIR", str(data_dir))
    assert _sizes(load_splits("trec")) == SIZES["trec"]


def test_mr_is_latin1_and_loses_no_byte(data_dir):
    texts = load_splits("mr", data_dir)["train"]["text"][:]
    lines = (data_dir / "kim" / "rt-polarity.all").read_bytes().split(b"\n")[:-1]
    assert [t.encode("latin-1") for t in texts] == [line.split(b" ", 1)[1] for line in lines]
    # byte 0x85 is a line break for str.splitlines(); it must stay inside its sentence
    assert sum("\x85" in t for t in texts) > 0


def test_mr_from_raw_pos_neg_equals_kim_file(data_dir, tmp_path):
    raw = load_splits("mr", _with(tmp_path, data_dir, "raw"))["train"]
    kim = load_splits("mr", data_dir)["train"]
    assert raw["text"][:] == kim["text"][:] and raw["label"][:] == kim["label"][:]


def test_trec_label_order_matches_the_raw_coarse_labels(data_dir, tmp_path):
    kim = load_splits("trec", data_dir)
    raw = load_splits("trec", _with(tmp_path, data_dir, "raw"))
    for split in ("train", "test"):
        assert kim[split]["text"][:] == raw[split]["text"][:]
        assert kim[split]["label"][:] == raw[split]["label"][:]
    first = raw["train"][0]
    assert first["text"].startswith("How did serfdom") and TREC_COARSE[first["label"]] == "DESC"


def test_trec_fine_labels(data_dir):
    dsd = load_splits("trec", data_dir, fine_labels=True)
    assert _sizes(dsd) == SIZES["trec"]
    names = dsd["train"].features["label"].names
    assert names == list(TREC_FINE) and len(names) == 50
    coarse = load_splits("trec", data_dir)
    for fine, c in zip(dsd["train"]["label"][:], coarse["train"]["label"][:], strict=True):
        assert names[fine].split(":")[0] == TREC_COARSE[c]


@pytest.mark.parametrize("name, phrases", [("sst1", SST1_PHRASES), ("sst2", SST2_PHRASES)])
def test_sst_phrase_level_training_set(data_dir, name, phrases):
    dsd = load_splits(name, data_dir, phrases=True)
    sentences = load_splits(name, data_dir)
    assert _sizes(dsd) == {"train": phrases, "dev": SIZES[name]["dev"], "test": SIZES[name]["test"]}
    assert dsd["test"]["text"][:] == sentences["test"]["text"][:]  # evaluation stays on whole sentences
    train = dsd["train"]["text"][:]
    assert len({t.lower() for t in train}) == len(train)
    labels = dict(zip(train, dsd["train"]["label"][:], strict=True))
    if name == "sst1":
        assert labels["The Rock"] == 2 and labels["gorgeously"] == 3
    else:
        assert "The Rock" not in labels and labels["gorgeously"] == 1


@pytest.mark.parametrize("name", ["sst1", "sst2"])
def test_sst_sentences_from_trees_match_kims_files(data_dir, tmp_path, name):
    trees = load_splits(name, _with(tmp_path, data_dir, "sst-trees"))
    kim = load_splits(name, data_dir)
    assert _sizes(trees) == SIZES[name]
    for split in SIZES[name]:
        assert collections.Counter(trees[split]["label"][:]) == collections.Counter(kim[split]["label"][:])


@pytest.mark.parametrize("name, files", [("subj", "kim/subj.all"), ("cr", "kim/custrev.all"),
                                         ("mpqa", "kim/mpqa.all"), ("sst2", "kim/stsa.binary.train")])
def test_offline_without_local_files_says_what_to_put_where_at_once(tmp_path, name, files, monkeypatch):
    monkeypatch.delenv("JAXCNN_DATA_DIR", raising=False)  # .ci/run sets it to a folder that holds sst2
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"{name}: not found: put .*{files}.* under {tmp_path} \(--data-dir\) "
                       r"\(jaxcnn bundles only mr and trec, and the Hugging Face Hub is unreachable or offline\)"
                       ) as err:
        load_splits(name, tmp_path)
    assert "\n" not in str(err.value) and time.perf_counter() - start < 2.0
    with pytest.raises(DataError, match=rf"{name}: not found: .*--data-dir"):
        find(name)  # no folder at all: the flag to give is named


@pytest.mark.parametrize("name, sizes", [("mr", {"train": 10662}), ("trec", {"train": 5452, "test": 500})])
def test_mr_and_trec_come_bundled_with_kims_files(data_dir, tmp_path, name, sizes, monkeypatch):
    monkeypatch.delenv("JAXCNN_DATA_DIR", raising=False)
    assert find(name).startswith("bundled with jaxcnn") and find(name, tmp_path).startswith("bundled with jaxcnn")
    bundled, where = locate(name)
    assert _sizes(bundled) == sizes and where.startswith("bundled with jaxcnn")
    shared = load_splits(name, data_dir)  # the data folder comes first, and holds the same files
    assert find(name, data_dir) == str(data_dir)
    for split in sizes:
        assert bundled[split][:]["text"] == shared[split][:]["text"]
        assert bundled[split][:]["label"] == shared[split][:]["label"]
    assert sum(f.stat().st_size for f in BUNDLED.glob("*.xz")) < 1_000_000


def test_phrases_need_the_trees(data_dir, tmp_path):
    with pytest.raises(DataError, match=r"training on phrases \(--phrases, SST's default\) needs sst-trees/train.txt"):
        load_splits("sst1", _with(tmp_path, data_dir, "kim"), phrases=True)


def test_partial_local_files_are_an_error_not_a_hub_fallback(data_dir, tmp_path):
    (tmp_path / "kim").mkdir()
    (tmp_path / "kim" / "stsa.fine.train").symlink_to(data_dir / "kim" / "stsa.fine.train")
    with pytest.raises(DataError, match="sst1: found some of its files but not kim/stsa.fine.dev, kim/stsa.fine.test"):
        load_splits("sst1", tmp_path)


def test_flat_folder_works(data_dir, tmp_path):
    for name in ("TREC.train.all", "TREC.test.all"):
        (tmp_path / name).symlink_to(data_dir / "kim" / name)
    assert _sizes(load_splits("TREC", tmp_path)) == SIZES["trec"]


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "imdb"}, "--dataset: unknown dataset 'imdb'"),
    ({"name": "mr", "phrases": True}, "--phrases: only SST-1 and SST-2"),
    ({"name": "sst1", "fine_labels": True}, "--fine-labels: only TREC"),
])
def test_bad_requests(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_splits(data_dir=tmp_path, **kwargs)
    with pytest.raises(DataError, match="no-such-dir: data folder not found"):
        load_splits("mr", tmp_path / "no-such-dir")


@pytest.mark.parametrize("name, file, n, label_only", [("cr", "custrev.all", 3775, 4), ("mpqa", "mpqa.all", 10606, 3)])
def test_cr_and_mpqa_files_with_label_only_lines_load_with_kims_counts(tmp_path, name, file, n, label_only, caplog):
    """Files shaped like Kim's: N lines (Kim's Table 1), some a label alone, one `0 *`; they load through the
    registry from --data-dir, and the run's data line counts the sentences that have no token."""
    from jaxcnn import cli, configs, tasks
    from tests.train.helpers import synthetic_sentences

    texts, labels = synthetic_sentences(n, seed=3)
    lines = [f"{y} {t}" for t, y in zip(texts, labels)]
    for i in range(label_only):
        lines[100 + 37 * i] = str(labels[100 + 37 * i])
    lines[50] = "0 *"
    (tmp_path / "kim").mkdir()
    (tmp_path / "kim" / file).write_text("\n".join(lines) + "\n", encoding="latin-1")
    dsd = load_splits(name, tmp_path)
    assert len(dsd["train"]) == n and sum(t == "" for t in dsd["train"][:]["text"]) == label_only
    cfg = configs.tiny().replace(dataset=name, data_dir=str(tmp_path), devices=1)
    examples = tasks.get("text").load(cfg)
    assert len(examples) == n and examples.protocol == "cv"
    rows = examples.rows(cfg)
    data = tasks.get("text").prepare(cfg, examples, [rows], [0])
    assert int(data.empty.sum()) == label_only + 1  # the label-only lines and `0 *`
    assert f"empty {{'train': " in data.describe(rows)
    # End to end: trains, and the data line names the empty sentences.
    workdir = tmp_path / "w"
    assert cli.main(["train", "--dataset", name, "--data-dir", str(tmp_path), "--workdir", str(workdir), "--epochs", "1",
                     "--embed-dim", "8", "--maps", "4", "--windows", "2", "3", "--no-progress", "--no-plots",
                     "--no-tensorboard", "--devices", "1"]) == 0
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("data:"))
    counts = re.search(r"\| empty \{'train': (\d+), 'dev': (\d+), 'test': (\d+)\}", line)
    assert counts and sum(map(int, counts.groups())) == label_only + 1, line
