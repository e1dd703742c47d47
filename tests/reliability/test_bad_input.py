"""Malformed input for every reader, through the real `jaxcnn train` (or the API where no flag reads the file).

Each row of TABLE is one (reader, case): it writes the files, runs `jaxcnn.cli.main`, and requires exit status 2,
exactly one line on stderr naming the file and its line (`path:N:`) or byte offset (`path: byte N:`), and a
bounded peak of Python memory (tracemalloc) even for a 10 MB line. The same table is in docs/reliability.md.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import re
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from jaxcnn import cli
from jaxcnn.data import readers, trees
from jaxcnn.data.vocab import Vocabulary
from jaxcnn.errors import DataError

MB10 = 10 * 1024 * 1024
PEAK_LIMIT = 96 * 1024 * 1024  # Python allocations at their peak, for a 10 MB file (so about 9 copies at most)
TINY = ["--embed-dim", "8", "--maps", "4", "--windows", "2", "--batch-size", "4", "--devices", "1", "--no-progress",
        "--no-tensorboard", "--no-plots", "--epochs", "1"]
GOOD = {"train": "0 a dull film\n1 a good film\n0 bad\n1 great\n", "dev": "0 dull\n1 good\n",
        "test": "1 fine\n0 poor\n"}
WORDS = ["a", "dull", "film", "good", "bad", "great"]
CAFE = "café".encode()  # UTF-8 elsewhere in the file makes a stray byte an error, not latin-1 text


def write(path: pathlib.Path, content: str | bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@dataclasses.dataclass(frozen=True)
class Row:
    """One case: `make(folder) -> (argv after 'train --workdir W', the bad file)`; `message` is a regex of what
    follows `path:line: ` / `path: byte N: ` / `path: ` (for files without lines: empty ones)."""

    reader: str
    case: str
    make: Callable[[pathlib.Path], tuple[list[str], pathlib.Path]]
    message: str
    where: str = "line"  # "line", "byte" or "file"


# -- builders -------------------------------------------------------------------------------------------------------


def own(fmt: str, split: str, content: str | bytes) -> Callable:
    """--train-file/--dev-file/--test-file in `fmt`, with `content` replacing `split`."""
    suffix = {"kim": "txt", "csv": "csv", "tsv": "tsv", "jsonl": "jsonl"}[fmt]

    def good(name: str) -> str:
        rows = [line.split(" ", 1) for line in GOOD[name].splitlines()]
        if fmt == "kim":
            return GOOD[name]
        if fmt == "jsonl":
            return "".join(f'{{"text": "{t}", "label": {y}}}\n' for y, t in rows)
        sep = "," if fmt == "csv" else "\t"
        return f"text{sep}label\n" + "".join(f"{t}{sep}{y}\n" for y, t in rows)

    def make(folder: pathlib.Path):
        paths = {}
        for name in ("train", "dev", "test"):  # split "none": all three good
            paths[name] = write(folder / f"{name}.{suffix}", content if name == split else good(name))
        return ["--train-file", str(paths["train"]), "--dev-file", str(paths["dev"]), "--test-file",
                str(paths["test"]), "--format", fmt], paths.get(split)

    return make


def registry(dataset: str, files: dict[str, str | bytes], bad: str, *flags: str) -> Callable:
    """--dataset with a --data-dir holding `files` (relative path -> content); `bad` is the broken one."""

    def make(folder: pathlib.Path):
        for rel, content in files.items():
            write(folder / "data" / rel, content)
        return ["--dataset", dataset, "--data-dir", str(folder / "data"), *flags], folder / "data" / bad

    return make


def vectors(fmt: str, content: bytes) -> Callable:
    def make(folder: pathlib.Path):
        args, _ = own("kim", "none", "")(folder)
        path = write(folder / f"vectors.{'bin' if fmt == 'word2vec_bin' else 'txt'}", content)
        return [*args, "--variant", "static", "--embeddings", str(path), "--embeddings-format", fmt], path

    return make


def config(content: str | bytes) -> Callable:
    def make(folder: pathlib.Path):
        return ["--config", str(write(folder / "config.json", content))], folder / "config.json"

    return make


def w2v_bin(rows: list[tuple[str, list[float]]], dim: int, count: int | None = None) -> bytes:
    body = b"".join(w.encode() + b" " + struct.pack(f"<{dim}f", *v) + b"\n" for w, v in rows)
    return f"{len(rows) if count is None else count} {dim}\n".encode() + body


def text_vectors(dim: int, header: bool = True, bad: dict[int, str] | None = None) -> str:
    lines = [f"{w} " + " ".join(f"{0.1 * (i + k):.2f}" for k in range(dim)) for i, w in enumerate(WORDS)]
    for i, line in (bad or {}).items():
        lines[i] = line
    return (f"{len(WORDS)} {dim}\n" if header else "") + "\n".join(lines) + "\n"


GOOD_BIN = w2v_bin([(w, [0.1 * i] * 4) for i, w in enumerate(WORDS)], 4)
LONG_KIM = "0 " + "word " * (MB10 // 5)
TREES = {"sst-trees/train.txt": "(3 (2 a) (3 (2 good) (2 film)))\n", "sst-trees/dev.txt": "(1 (1 dull))\n",
         "sst-trees/test.txt": "(4 (4 great))\n"}
TREC = {"raw/TREC.train": "DESC:manner How did serfdom develop ?\nHUM:ind Who killed Gandhi ?\n",
        "raw/TREC.test": "NUM:date When was it ?\n"}
MR = {"raw/rt-polarity.neg": "a dull film\n", "raw/rt-polarity.pos": "a good film\n"}


def trees_with(text: str | bytes) -> dict:
    return {**TREES, "sst-trees/train.txt": text}


def trec_with(text: str | bytes) -> dict:
    return {**TREC, "raw/TREC.train": text}


def mr_with(text: str | bytes) -> dict:
    return {**MR, "raw/rt-polarity.neg": text}


TABLE = [
    # Kim's format: `<label> <sentence>`, through --train-file (labels inferred) and the registry (2 classes).
    Row("kim", "empty file", own("kim", "train", ""), "empty file", "file"),
    Row("kim", "blank lines", own("kim", "train", "0 a\n\n1 b\n"), r"2: blank line"),
    Row("kim", "missing label", own("kim", "train", "0 a\ngood film\n"), r"2: missing or non-integer label 'good'"),
    Row("kim", "label out of range", own("kim", "train", "0 a\n1 b\n7 c\n"), r"3: label 7 is out of range"),
    Row("kim", "label out of range (dev)", own("kim", "dev", "0 a\n2 b\n"),
        r"2: label 2 is not one of the 2 classes \(0, 1\)"),
    Row("kim", "label out of range (registry)",
        registry("mr", {"kim/rt-polarity.all": "0 a\n1 b\n2 c\n"}, "kim/rt-polarity.all"),
        r"3: label 2 outside the classes 0..1"),
    Row("kim", "label of 5000 digits", own("kim", "train", "0 a\n" + "9" * 5000 + " b\n"),
        r"2: label 9{12}\.\.\. is out of range"),
    Row("kim", "wrong delimiter", own("kim", "train", "0,a good film\n"), r"1: missing or non-integer label '0,a'"),
    Row("kim", "invalid UTF-8", own("kim", "train", b"0 " + CAFE + b"\n1 bad \xff film\n"),
        r"2: byte 0xff \(offset \d+\) is not UTF-8, but the file holds UTF-8 characters elsewhere"),
    Row("kim", "10 MB line", own("kim", "train", LONG_KIM), r"1: line of \d+ bytes, over the 1048576-byte limit"),
    # MR as released: one sentence a line, the label from the file name.
    Row("mr raw", "empty file", registry("mr", mr_with(""), "raw/rt-polarity.neg"), "empty file", "file"),
    Row("mr raw", "blank lines", registry("mr", mr_with("a\n\nb\n"), "raw/rt-polarity.neg"), r"2: blank line"),
    Row("mr raw", "invalid UTF-8", registry("mr", mr_with(CAFE + b"\n\xff\n"), "raw/rt-polarity.neg"),
        r"2: byte 0xff .* mixed encodings"),
    Row("mr raw", "10 MB line", registry("mr", mr_with("word " * (MB10 // 5)), "raw/rt-polarity.neg"),
        r"1: line of \d+ bytes"),
    # CSV / TSV / JSON lines through --format.
    Row("csv", "empty file", own("csv", "train", ""), "empty file", "file"),
    Row("csv", "blank lines", own("csv", "train", "text,label\na,1\n\nb,0\n"), r"3: blank line"),
    Row("csv", "missing label", own("csv", "train", "text,label\na,1\nb\n"), r"3: row has 1 fields, the header has 2"),
    Row("csv", "empty label", own("csv", "train", "text,label\na,1\nb,\n"), r"3: empty label in column 'label'"),
    Row("csv", "label out of range", own("csv", "train", "text,label\na,0\nb,1\nc,9\n"), r"4: label 9 is out of range"),
    Row("csv", "wrong delimiter", own("csv", "train", "text;label\na;1\n"),
        r"1: no column 'text'; the header has: text;label \(wrong delimiter\?\)"),
    Row("csv", "invalid UTF-8", own("csv", "train", b"text,label\n" + CAFE + b",1\n\xff,0\n"), r"3: byte 0xff"),
    Row("csv", "10 MB line", own("csv", "train", "text,label\n" + "w" * MB10 + ",1\n"), r"2: line of \d+ bytes"),
    Row("tsv", "empty file", own("tsv", "train", ""), "empty file", "file"),
    Row("tsv", "blank lines", own("tsv", "train", "text\tlabel\na\t1\n\nb\t0\n"), r"3: blank line"),
    Row("tsv", "missing label", own("tsv", "train", "text\tlabel\na\t1\nb\n"), r"3: row has 1 fields"),
    Row("tsv", "label out of range", own("tsv", "train", "text\tlabel\na\t0\nb\t1\nc\t7\n"), r"4: label 7 is out"),
    Row("tsv", "wrong delimiter", own("tsv", "train", "text,label\na,1\n"), r"1: no column 'text'.*wrong delimiter"),
    Row("tsv", "invalid UTF-8", own("tsv", "train", b"text\tlabel\n" + CAFE + b"\t1\n\xff\t0\n"), r"3: byte 0xff"),
    Row("tsv", "10 MB line", own("tsv", "train", "text\tlabel\n" + "w" * MB10 + "\t1\n"), r"2: line of \d+ bytes"),
    Row("jsonl", "empty file", own("jsonl", "train", ""), "empty file", "file"),
    Row("jsonl", "blank lines", own("jsonl", "train", '{"text": "a", "label": 1}\n\n'), r"2: blank line"),
    Row("jsonl", "missing label", own("jsonl", "train", '{"text": "a"}\n'), r"1: no key 'label'; the object has: text"),
    Row("jsonl", "label out of range", own("jsonl", "dev", '{"text": "a", "label": 3}\n'),
        r"1: label 3 is not one of the 2 classes"),
    Row("jsonl", "wrong delimiter", own("jsonl", "train", "{'text': 'a', 'label': 1}\n"),
        r"1: not valid JSON: Expecting property name enclosed in double quotes"),
    Row("jsonl", "invalid UTF-8", own("jsonl", "train", b'{"text": "' + CAFE + b'", "label": 1}\n\xff\n'),
        r"2: byte 0xff"),
    Row("jsonl", "10 MB line", own("jsonl", "train", '{"text": "' + "w" * MB10 + '", "label": 1}\n'),
        r"1: line of \d+ bytes"),
    Row("jsonl", "nested 100000 levels", own("jsonl", "train", "[" * 100_000 + "]" * 100_000 + "\n"),
        r"1: JSON nested too deeply"),
    # SST trees (--dataset sst1 reads sst-trees/*.txt when the Kim-format files are absent).
    Row("sst trees", "empty file", registry("sst1", trees_with(""), "sst-trees/train.txt"), "empty file", "file"),
    Row("sst trees", "blank lines", registry("sst1", trees_with("(2 (2 a))\n\n"), "sst-trees/train.txt"),
        r"2: blank line \(every line must hold a tree\)"),
    Row("sst trees", "missing label", registry("sst1", trees_with("(2 (2 a))\n(The movie)\n"), "sst-trees/train.txt"),
        r"2: bad tree: expected a label 0..4 after '\(', found 'The'"),
    Row("sst trees", "label out of range", registry("sst1", trees_with("(7 (2 a) (2 b))\n"), "sst-trees/train.txt"),
        r"1: bad tree: expected a label 0..4 after '\(', found '7'"),
    Row("sst trees", "wrong delimiter", registry("sst1", trees_with("[2 [2 a] [2 b]]\n"), "sst-trees/train.txt"),
        r"1: bad tree: expected '\(' at the start"),
    Row("sst trees", "invalid UTF-8", registry("sst1", trees_with(b"(2 (2 a))\n(2 (2 \xff))\n"),
                                               "sst-trees/train.txt"), r"2: not valid utf-8 \(byte 0xff\)"),
    Row("sst trees", "10 MB line", registry("sst1", trees_with("(2 " + "(2 w) " * (MB10 // 6) + ")\n"),
                                            "sst-trees/train.txt"), r"1: line of \d+ bytes"),
    Row("sst trees", "nested 100000 levels, unclosed",
        registry("sst1", trees_with("(2 " * 100_000 + "deep\n"), "sst-trees/train.txt"),
        r"1: bad tree: 100000 unclosed"),
    Row("sst trees", "nested 100000 levels, a word at each",
        registry("sst1", trees_with("(2 " * 100_000 + "w) " * 100_000 + "\n"), "sst-trees/train.txt"),
        r"1: bad tree: its phrases exceed 16777216 characters"),
    # TREC as released: `COARSE:fine question`.
    Row("trec raw", "empty file", registry("trec", trec_with(""), "raw/TREC.train"), "empty file", "file"),
    Row("trec raw", "blank lines", registry("trec", trec_with("DESC:def What ?\n\n"), "raw/TREC.train"),
        r"2: blank line"),
    Row("trec raw", "missing label", registry("trec", trec_with("DESC:def What ?\nWho is it ?\n"), "raw/TREC.train"),
        r"2: expected 'COARSE:fine question' .* found label 'Who'"),
    Row("trec raw", "label out of range", registry("trec", trec_with("COLOR:red What ?\n"), "raw/TREC.train"),
        r"1: expected 'COARSE:fine question' with COARSE one of DESC, ENTY, ABBR, HUM, LOC, NUM, "
        r"found label 'COLOR:red'"),
    Row("trec raw", "wrong delimiter", registry("trec", trec_with("DESC:def\tWhat is it ?\n"), "raw/TREC.train"),
        r"1: expected 'COARSE:fine question'.*found label 'DESC:def\\tWhat'"),
    Row("trec raw", "invalid UTF-8", registry("trec", trec_with(b"DESC:def " + CAFE + b" ?\nHUM:ind \xff ?\n"),
                                              "raw/TREC.train"), r"2: byte 0xff"),
    Row("trec raw", "10 MB line", registry("trec", trec_with("DESC:def " + "w" * MB10 + "\n"), "raw/TREC.train"),
        r"1: line of \d+ bytes"),
    # Word vectors, each format (--variant static --embeddings F --embeddings-format FMT).
    Row("word2vec bin", "empty file", vectors("word2vec_bin", b""), r"1: expected a header 'count dim'"),
    Row("word2vec bin", "wrong header", vectors("word2vec_bin", b"6\n" + GOOD_BIN.split(b"\n", 1)[1]),
        r"1: expected a header 'count dim' \(two positive integers\), found '6'"),
    Row("word2vec bin", "huge dimension in header", vectors("word2vec_bin", b"6 400000000\n" + b"a " * 10),
        r"1: vectors of 400000000 dimensions: more than the 10000"),
    Row("word2vec bin", "truncated", vectors("word2vec_bin", GOOD_BIN[:-30]),
        r"byte \d+: file ends inside vector \d of 6", "byte"),
    Row("word2vec bin", "missing vectors", vectors("word2vec_bin", w2v_bin([("a", [0.0] * 4)], 4, count=6)),
        r"byte \d+: file ends after 1 of the 6 vectors", "byte"),
    Row("word2vec bin", "NaN", vectors("word2vec_bin", w2v_bin([("good", [0.1, math.nan, 0.0, 0.0])], 4)),
        r"byte \d+: NaN or infinite value in the vector of 'good'", "byte"),
    Row("word2vec bin", "10 MB line", vectors("word2vec_bin", b"1 4\n" + b"w" * MB10),
        r"byte 4: no space after a word within 4096 bytes", "byte"),
    Row("word2vec txt", "empty file", vectors("word2vec_txt", b""), r"1: expected a header 'count dim'"),
    Row("word2vec txt", "blank lines", vectors("word2vec_txt", text_vectors(4, bad={2: ""}).encode()),
        r"4: blank line"),
    Row("word2vec txt", "wrong header", vectors("word2vec_txt", text_vectors(4, header=False).encode()),
        r"1: expected a header 'count dim' \(two positive integers\), found 'a 0.00"),
    Row("word2vec txt", "truncated", vectors("word2vec_txt", text_vectors(4).rsplit("\n", 3)[0].encode() + b"\n"),
        r"\d+: the header announces 6 vectors but the file holds 4 \(truncated\?\)"),
    Row("word2vec txt", "wrong delimiter",
        vectors("word2vec_txt", text_vectors(4, bad={3: "good\t1\t2\t3\t4"}).encode()),
        r"5: expected 'word v1 ... v4' separated by single spaces"),
    Row("word2vec txt", "NaN", vectors("word2vec_txt", text_vectors(4, bad={3: "good 1 nan 3 4"}).encode()),
        r"5: NaN or infinite value in the vector of 'good'"),
    Row("word2vec txt", "invalid UTF-8", vectors("word2vec_txt", text_vectors(4).encode() + b"\xff 1 2 3 4\n"),
        r"8: not UTF-8 text"),
    Row("word2vec txt", "10 MB line", vectors("word2vec_txt", b"1 4\n" + b"w " * (MB10 // 2) + b"\n"),
        r"2: line longer than 1048576 bytes"),
    Row("fasttext", "wrong header", vectors("fasttext", b"six 4\n" + text_vectors(4, header=False).encode()),
        r"1: expected a header 'count dim'"),
    Row("fasttext", "NaN", vectors("fasttext", text_vectors(4, bad={1: "dull 1 2 inf 4"}).encode()),
        r"3: NaN or infinite value in the vector of 'dull'"),
    Row("glove", "empty file", vectors("glove", b""), r"1: expected 'word v1 v2 ...'"),
    Row("glove", "blank lines", vectors("glove", text_vectors(4, header=False, bad={1: ""}).encode()),
        r"2: blank line"),
    Row("glove", "wrong header", vectors("glove", text_vectors(4).encode()),
        r"1: the first line looks like a 'count dim' header"),
    Row("glove", "wrong delimiter", vectors("glove", "a\t1\t2\nb\t3\t4\n".encode()),
        r"1: expected 'word v1 ... v2' separated by single spaces"),
    Row("glove", "NaN", vectors("glove", text_vectors(4, header=False, bad={4: "bad nan nan nan nan"}).encode()),
        r"5: NaN or infinite value in the vector of 'bad'"),
    Row("glove", "invalid UTF-8", vectors("glove", b"\xff\xfe 1 2\n"), r"1: not UTF-8 text"),
    Row("glove", "10 MB line", vectors("glove", b"w " + b"1 " * (MB10 // 2) + b"\n"), r"1: line longer than"),
    # --config: a JSON config (as WORKDIR/config.json).
    Row("config json", "empty file", config(""), "--config: .*: empty file", "file"),
    Row("config json", "blank lines", config('{"train":\n\n}'), r"--config: .*:3: not valid JSON: Expecting value"),
    Row("config json", "wrong type", config('{"train": {"epochs": "three"}}'),
        r"--config: .*: epochs: expected an integer, got 'three'", "file"),
    Row("config json", "value out of range", config('{"data": {"fold": 12}}'), r"^jaxcnn train: error: --fold: must "
        r"be in \[0, 10\), got 12", "flag"),
    Row("config json", "unknown field", config('{"train": {"epoch": 3}}'),
        r"--config: .*: unknown config field train.epoch", "file"),
    Row("config json", "not an object", config("[1, 2]"), r"--config: .*: expected a JSON object, found list", "file"),
    Row("config json", "invalid UTF-8", config(b'{"data": {"dataset": "\xff"}}'),
        r"--config: .*:1: not UTF-8 \(byte 0xff at offset 22\)"),
    Row("config json", "nested 100000 levels", config("[" * 100_000 + "]" * 100_000),
        r"--config: .*: JSON nested too deeply", "file"),
    Row("config json", "10 MB line", config('{"data": {"dataset": "mr"}}' + " " * MB10 + "x"),
        r"--config: .*:1: not valid JSON: Extra data"),
]


@pytest.fixture(scope="module", autouse=True)
def imported():
    """Imports what a run imports before memory is traced: tracing the imports would be slow and measure them."""
    import datasets  # noqa: F401

    import jaxcnn.train.trainer  # noqa: F401


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"{r.reader}-{r.case}".replace(" ", "_"))
def test_bad_input_is_one_line_naming_the_file_and_a_non_zero_exit(tmp_path, capsys, row):
    argv, bad = row.make(tmp_path)
    tracemalloc.start()
    try:
        code = cli.main(["train", "--workdir", str(tmp_path / "w"), *TINY, *argv])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    if row.where != "flag":
        where = {"line": r":\d+: ", "byte": r": byte \d+: ", "file": r"(:\d+)?: "}[row.where]
        assert re.search(f"{re.escape(str(bad))}{where}", err[0]), err[0]
    assert re.search(row.message, err[0]), err[0]
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.0f} MiB"


VOCAB_CASES = [
    ("empty file", b"", r"vocab.json: empty file"),
    ("blank lines", b'{"format": "jaxcnn.vocabulary",\n\n', r"vocab.json:3: vocabulary is not valid JSON"),
    ("not a vocabulary", b'{"itos": ["<pad>"]}', r"vocab.json: not a jaxcnn vocabulary"),
    ("invalid UTF-8", b'{"format": "jaxcnn.vocabulary", "version": 1,\n"itos": ["\xff"]}',
     r"vocab.json:2: not UTF-8 \(byte 0xff at offset 56\)"),
    ("nested 100000 levels", b"[" * 100_000 + b"]" * 100_000, r"vocab.json: vocabulary is JSON nested too deeply"),
    ("a 5000-digit number", b'{"version": ' + b"9" * 5000 + b"}", r"vocab.json: vocabulary is unusable JSON"),
    ("duplicate token", b'{"format": "jaxcnn.vocabulary", "version": 1, "itos": ["<pad>", "<unk>", "a", "a"]}',
     r"vocab.json: bad vocabulary: a vocabulary may not hold the same token twice"),
]


@pytest.mark.parametrize("case, content, message", VOCAB_CASES, ids=[c[0] for c in VOCAB_CASES])
def test_vocabulary_file_errors_are_one_line(tmp_path, case, content, message):
    """No command reads a vocabulary file (checkpoints carry the vocabulary), so this row goes through the API."""
    path = write(tmp_path / "vocab.json", content)
    with pytest.raises(DataError, match=message) as err:
        Vocabulary.load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_deep_well_formed_tree_parses_in_bounded_memory(tmp_path):
    """100000 nested nodes over one word are a valid (if odd) tree: parsed without recursion, 100000 phrases."""
    path = write(tmp_path / "deep.txt", "(1 " * 100_000 + "deep" + ")" * 100_000 + "\n")
    tracemalloc.start()
    try:
        texts, labels = trees.read_trees(path, phrases=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert texts == ["deep"] and labels == [1]  # all 100000 phrases are the same text, deduplicated
    assert peak < PEAK_LIMIT


def test_the_real_process_exits_non_zero_with_one_line(tmp_path):
    """The same contract for the installed command in its own process (no traceback, exit status 2)."""
    argv, bad = own("kim", "train", LONG_KIM)(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "train", "--workdir", str(tmp_path / "w"), *TINY,
                           *argv], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"jaxcnn train: error: {bad}:1: line of {len(LONG_KIM)} bytes, over the 1048576-byte limit for one example "
        f"(is this one example per line?)"]


def test_latin1_without_utf8_is_read_not_refused(tmp_path):
    """A stray byte in a file with no UTF-8 characters is latin-1 text (MR and TREC are latin-1), by design."""
    path = write(tmp_path / "t.txt", b"0 caf\xe9\n1 na\xefve\n")
    assert readers.read_kim(path) == (["caf\u00e9", "na\u00efve"], [0, 1])


def test_vectors_of_words_outside_the_vocabulary_are_not_parsed(tmp_path):
    """Rows of other words are skipped unparsed (a 3.6 GB file streams in one pass), so a NaN there is harmless."""
    from jaxcnn.data.embeddings import load_word_vectors

    vocab = Vocabulary.build([["good"]])
    path = write(tmp_path / "v.txt", "good 1 2\nzebra nan nan\n")
    matrix, report = load_word_vectors(path, vocab, fmt="glove")
    assert report.found == 1 and np.isfinite(matrix).all()


IDX_HEADER = b"\x00\x00\x08\x03" + np.array([5, 4, 4], ">u4").tobytes()
IDX_LABELS = b"\x00\x00\x08\x01" + np.array([5], ">u4").tobytes() + bytes([0, 1, 0, 1, 0])
IMAGE_CASES = [
    ("IDX empty file", {"a-images-idx3-ubyte": b"", "a-labels-idx1-ubyte": IDX_LABELS},
     r"a-images-idx3-ubyte: byte 0: truncated IDX header"),
    ("IDX wrong magic", {"a-images-idx3-ubyte": b"\x01\x02" + IDX_HEADER[2:] + bytes(80),
                         "a-labels-idx1-ubyte": IDX_LABELS}, r"a-images-idx3-ubyte: byte 0: not an IDX file"),
    ("IDX truncated", {"a-images-idx3-ubyte": IDX_HEADER + bytes(50), "a-labels-idx1-ubyte": IDX_LABELS},
     r"a-images-idx3-ubyte: byte 16: IDX dims \(5, 4, 4\) need 80 data bytes after the header, found 50"),
    ("IDX labels of another length", {"a-images-idx3-ubyte": IDX_HEADER + bytes(80),
                                      "a-labels-idx1-ubyte": IDX_LABELS[:-1]},
     r"a-labels-idx1-ubyte: byte 8: IDX dims \(5,\) need 5 data bytes"),
    ("npz not an archive", {"a.npz": b"PK\x03\x04 garbage"}, r"a.npz: not a readable .npz"),
    ("npz of pickled objects", {"a.npz": "objects"}, r"a.npz: member x.npy: holds Python objects, not numbers"),
    ("image folder with a broken file", {"cat/a.png": b"not a png", "dog/b.png": b"\x89PNG\r\n"},
     r"a.png: cannot read the image"),
]


@pytest.mark.parametrize("case, files, message", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_image_readers_give_one_line_errors(tmp_path, case, files, message):
    """images.py through its API (`load_image_files`), since the image task's flags are still moving."""
    from jaxcnn.data import images

    for name, content in files.items():
        if content == "objects":
            np.savez(tmp_path / name, x=np.array([object()], dtype=object), y=np.array([0]))
        else:
            write(tmp_path / name, content)
    first = next(iter(files))
    target = tmp_path if "/" in first else tmp_path / first
    with pytest.raises(DataError, match=message) as err:
        images.load_image_files(target)
    assert "\n" not in str(err.value)
