"""Own data (load_files), Hub-shaped folders (load_hub), and every bad-input error."""

import pandas as pd
import pytest

from jaxcnn.data.registry import load_files, load_hub, load_splits
from jaxcnn.data.trees import parse_tree
from jaxcnn.errors import ConfigError, DataError


def _write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _names(dsd):
    return dsd["train"].features["label"].names


def test_kim_format_any_number_of_classes(tmp_path):
    train = _write(tmp_path / "train.txt", "0 a b\n3 c d\n1 e\n2 f\n")
    test = _write(tmp_path / "test.txt", "3 g h\n")
    dsd = load_files(train, test_file=test)
    assert list(dsd) == ["train", "test"] and _names(dsd) == ["0", "1", "2", "3"]
    assert dsd["train"]["label"][:] == [0, 3, 1, 2] and dsd["train"]["text"][:] == ["a b", "c d", "e", "f"]
    named = load_files(train, fmt="kim", label_names=["w", "x", "y", "z"])
    assert _names(named) == ["w", "x", "y", "z"]


def test_csv_tsv_jsonl_with_string_labels(tmp_path):
    csv = _write(tmp_path / "train.csv", 'id,review,sentiment\n1,"great, really",pos\n2,"meh\nreally",neg\n')
    tsv = _write(tmp_path / "dev.tsv", 'review\tsentiment\n"quoted" text\tneg\n')
    jsonl = _write(tmp_path / "test.jsonl", '{"review": "fine", "sentiment": "pos"}\n')
    dsd = load_files(csv, tsv, jsonl, fmt="auto", text_column="review", label_column="sentiment")
    assert _names(dsd) == ["neg", "pos"]  # sorted distinct training labels
    assert dsd["train"]["text"][:] == ["great, really", "meh\nreally"]
    assert dsd["dev"][0] == {"text": '"quoted" text', "label": 0}
    assert dsd["test"][0] == {"text": "fine", "label": 1}


def test_jsonl_integer_labels_and_given_names(tmp_path):
    path = _write(tmp_path / "train.jsonl", '{"text": "a", "label": 2}\n{"text": "b", "label": "neg"}\n')
    dsd = load_files(path, fmt="jsonl", label_names=["neg", "neu", "pos"])
    assert dsd["train"]["label"][:] == [2, 0] and _names(dsd) == ["neg", "neu", "pos"]


def test_encoding_auto_falls_back_to_latin1(tmp_path):
    path = _write(tmp_path / "train.txt", "1 caf\xe9 \x85 ok\n".encode("latin-1"))
    assert load_files(path)["train"]["text"][:] == ["caf\xe9 \x85 ok"]
    utf8 = _write(tmp_path / "utf8.txt", "1 café\n".encode("utf-8-sig"))
    assert load_files(utf8)["train"]["text"][:] == ["café"]


@pytest.mark.parametrize("layout", ["parquet", "csv"])
def test_hub_shaped_folder_goes_through_load_dataset(tmp_path, layout):
    repo = tmp_path / "my-dataset"
    frames = {"train": pd.DataFrame({"sentence": ["good film", "bad film", "fine"], "y": ["pos", "neg", "pos"]}),
              "validation": pd.DataFrame({"sentence": ["awful"], "y": ["neg"]}),
              "test": pd.DataFrame({"sentence": ["lovely"], "y": ["pos"]})}
    for split, frame in frames.items():
        if layout == "parquet":
            (repo / "data").mkdir(parents=True, exist_ok=True)
            frame.to_parquet(repo / "data" / f"{split}-00000-of-00001.parquet")
        else:
            repo.mkdir(exist_ok=True)
            frame.to_csv(repo / f"{split}.csv", index=False)
    dsd = load_files(repo, text_column="sentence", label_column="y")
    assert {s: len(d) for s, d in dsd.items()} == {"train": 3, "dev": 1, "test": 1}
    assert _names(dsd) == ["neg", "pos"] and dsd["dev"][0] == {"text": "awful", "label": 0}
    with pytest.raises(DataError, match=r"my-dataset\[train\]: no column 'text'; columns are: sentence, y"):
        load_hub(repo)
    with pytest.raises(ConfigError, match="brings its own splits"):
        load_files(repo, dev_file=repo / "x.csv")


def test_hub_classlabel_names_are_matched_by_name(tmp_path):
    import datasets

    feats = datasets.Features({"text": datasets.Value("string"),
                               "coarse_label": datasets.ClassLabel(names=["ABBR", "ENTY", "DESC"])})
    repo = tmp_path / "trec-like"
    datasets.Dataset.from_dict({"text": ["a", "b", "c"], "coarse_label": [0, 1, 2]}, features=feats).to_parquet(
        str(repo / "data" / "train-00000-of-00001.parquet"))
    dsd = load_hub(repo, label_column="coarse_label", label_names=["DESC", "ENTY", "ABBR"])
    assert dsd["train"]["label"][:] == [2, 1, 0]


def test_missing_file_and_hub_id_offline(tmp_path):
    with pytest.raises(DataError, match="nope.txt: file not found"):
        load_files(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="cannot load 'someone/some-dataset'.*Offline"):
        load_files("someone/some-dataset")


CASES = [
    # (file name, content, kwargs, expected message after the path)
    ("t.txt", "1 a\n\n0 b\n", {}, r":2: blank line"),
    ("t.txt", "1 a\nhello world\n", {}, r":2: missing or non-integer label 'hello'"),
    ("t.txt", "1.5 a\n", {}, r":1: missing or non-integer label '1.5'"),
    ("t.txt", "0 a\n2 b\n", {"label_names": ["neg", "pos"]}, r":2: label 2 outside the classes 0..1"),
    ("t.txt", "-1 a\n", {}, r":1: label -1 is negative"),
    ("t.txt", "", {}, r": empty file"),
    ("t.txt", "\n \n", {}, r": empty file"),
    ("t.txt", "1 a\n0 caf\xe9\n".encode("latin-1"), {"encoding": "utf-8"}, r":2: not valid utf-8 \(byte 0xe9\)"),
    ("t.txt", b"1 a\n1 b\x00c\n", {}, r":2: NUL byte: not a text file"),
    ("t.csv", "text,y\na,1\n", {"fmt": "csv"}, r":1: no column 'label'; the header has: text, y"),
    ("t.csv", "text,label\na,1\nb\n", {"fmt": "csv"}, r":3: row has 1 fields, the header has 2"),
    ("t.csv", "text,label\na,1\n\nb,0\n", {"fmt": "csv"}, r":3: blank line"),
    ("t.tsv", "text\tlabel\na\t1\t2\n", {"fmt": "tsv"}, r":2: row has 3 fields"),
    ("t.csv", "text,label\na,x\nb,-3\n", {"fmt": "csv", "label_names": ["x", "y"]},
     r":3: label '-3' is not one of the 2 classes \(x, y\)"),
    ("t.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', {"fmt": "jsonl"}, r":2: no key 'label'"),
    ("t.jsonl", '{"text": "a", "label": 1.5}\n', {"fmt": "jsonl"}, r":1: 'label' must be an integer or a string"),
    ("t.jsonl", '{"text": "a", "label": 1\n', {"fmt": "jsonl"}, r":1: not valid JSON"),
    ("t.jsonl", '["a", 1]\n', {"fmt": "jsonl"}, r":1: expected a JSON object per line"),
    ("t.jsonl", '{"text": 5, "label": 1}\n', {"fmt": "jsonl"}, r":1: 'text' must be a string"),
]


@pytest.mark.parametrize("name, content, kwargs, message", CASES)
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, name, content, kwargs, message):
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError, match=f"^{path}{message}") as err:
        load_files(path, **kwargs)
    assert "\n" not in str(err.value)


def test_dev_label_unseen_in_training(tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\na,neg\nb,pos\n")
    dev = _write(tmp_path / "dev.csv", "text,label\nc,pos\nd,maybe\n")
    with pytest.raises(DataError, match=rf"^{dev}:3: label 'maybe' is not one of the 2 classes \(neg, pos\)"):
        load_files(train, dev, fmt="csv")


TREES = [
    ("(3 (2 a) (4 b)", r"bad tree: 1 unclosed '\('"),
    ("(3 (2 a) (4 b)))", r"bad tree: unbalanced '\)'"),
    ("(x (2 a))", r"bad tree: expected a label 0..4 after '\(', found 'x'"),
    ("(7 (2 a))", r"bad tree: expected a label 0..4 after '\(', found '7'"),
    ("(3 (2 a)) (1 b)", r"bad tree: text after the end of the tree"),
    ("(3 (2 a)) b", r"bad tree: text after the end of the tree"),
    ("(3 (2 ) (2 a))", r"bad tree: a node without words"),
    ("3 a", r"bad tree: expected '\(' at the start"),
    ("", r"blank line"),
]


@pytest.mark.parametrize("tree, message", TREES)
def test_bad_trees_name_file_and_line(tmp_path, tree, message):
    _write(tmp_path / "sst-trees" / "train.txt", f"(2 (2 fine) (2 tree))\n{tree}\n")
    for split in ("dev", "test"):  # a set with a file missing is refused before any file is read
        _write(tmp_path / "sst-trees" / f"{split}.txt", "(2 (2 fine) (2 tree))\n")
    with pytest.raises(DataError, match=rf"sst-trees/train.txt:2: {message}"):
        load_splits("sst1", tmp_path, phrases=True)


def test_deeply_nested_tree_parses_without_recursion():
    depth = 100_000
    phrases = parse_tree("(1 " * depth + "deep" + ")" * depth)
    assert len(phrases) == depth and phrases[-1] == ("deep", 1)
    with pytest.raises(DataError, match=f"{depth} unclosed"):
        parse_tree("(1 " * depth + "deep")


def test_trees_phrases_children_first_and_dedup(tmp_path):
    assert parse_tree("(3 (2 The) (4 (3 very) (4 Good)))") == [
        ("The", 2), ("very", 3), ("Good", 4), ("very Good", 4), ("The very Good", 3)]
    _write(tmp_path / "sst-trees" / "train.txt", "(3 (2 The) (3 film))\n(1 (2 the) (1 FILM))\n")
    for split in ("dev", "test"):
        _write(tmp_path / "sst-trees" / f"{split}.txt", "(4 (4 great))\n")
    dsd = load_splits("sst1", tmp_path, phrases=True)
    assert dsd["train"]["text"][:] == ["The", "film", "The film"]  # "the", "FILM", "the FILM" are duplicates
    assert dsd["dev"]["text"][:] == ["great"]
    binary = load_splits("sst2", tmp_path, phrases=True)
    assert binary["train"]["text"][:] == ["film", "The film"] and binary["train"]["label"][:] == [1, 1]



def test_a_label_alone_is_an_empty_sentence_and_a_blank_line_an_error(tmp_path):
    """Kim's CR and MPQA files hold lines that are a label alone (and `0 *`, which cleans to nothing); his code keeps
    them as empty sentences and his Table 1 counts them."""
    path = tmp_path / "t.txt"
    path.write_text("1 good\n0\n1 \n0 *\n", encoding="utf-8")
    dsd = load_files(path)
    assert dsd["train"][:]["text"] == ["good", "", "", "*"] and dsd["train"][:]["label"] == [1, 0, 1, 0]
    path.write_text("1 good\n0\n\n1 a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"t.txt:3: blank line"):
        load_files(path)
