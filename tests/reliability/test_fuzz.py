"""Property-based fuzzing of every parser: whatever the bytes, the only exception is a one-line DataError (or
ConfigError for a config) that names the file."""

from __future__ import annotations

import math
import pathlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxcnn.configs import Config
from jaxcnn.data import embeddings, readers, registry, trees
from jaxcnn.data.vocab import Vocabulary
from jaxcnn.errors import ConfigError, DataError
from jaxcnn.train.writers import read_metrics

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Pieces that make malformed-but-plausible files more likely than uniform random bytes would.
PIECES = [b"0", b"1", b"7", b"-1", b"99999999999999999999", b" ", b"\t", b"\n", b"\r\n", b"\n\n", b",", b";", b'"',
          b"(", b")", b"(2 ", b"(9 ", b"DESC:def", b"HUM:ind", b"XX:y", b"{", b"}", b"[", b"]", b'"text"', b'"label"',
          b":", b"nan", b"inf", b"1e40", b"0.5", b"good", b"caf\xc3\xa9", b"\xff", b"\xe9", b"\x00", b"\xef\xbb\xbf",
          b"3 4", b"2 2\n", b"word", b"<pad>", b'"format": "jaxcnn.vocabulary"', b'"itos"', b'"version": 1',
          # Unicode digits that are not 0-9 (int() takes some, not others) and line breaks that only
          # str.splitlines knows:
          "\u00b2".encode(), "\u0663".encode(), "\u2028".encode(), b"\x85", b"\x0b", b"\x1c"]
structured = st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join)
anything = st.one_of(structured, st.binary(max_size=300))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("fuzz")


def check(call, path: pathlib.Path, allowed=(DataError,)):
    try:
        call()
    except allowed as e:
        assert "\n" not in str(e), str(e)
        assert str(path) in str(e) or str(e).startswith("--"), str(e)


def put(folder: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=anything)
def test_kim_sentences_and_trec(folder, data):
    path = put(folder, "f.txt", data)
    check(lambda: readers.read_kim(path), path)
    check(lambda: readers.read_kim(path, num_classes=2, encoding="utf-8"), path)
    check(lambda: readers.read_sentences(path), path)
    check(lambda: readers.read_trec(path, registry.TREC_COARSE), path)


@FUZZ
@given(data=anything, fmt=st.sampled_from(["csv", "tsv", "jsonl"]))
def test_tables(folder, data, fmt):
    path = put(folder, f"f.{fmt}", data)
    check(lambda: readers.read_table(path, fmt, "text", "label"), path)


@FUZZ
@given(train=anything, dev=anything, fmt=st.sampled_from(["kim", "csv", "jsonl"]))
def test_own_files_with_label_inference(folder, train, dev, fmt):
    a, b = put(folder, f"train.{fmt}", train), put(folder, f"dev.{fmt}", dev)
    try:
        registry.load_files(a, b, fmt=fmt)
    except DataError as e:
        assert "\n" not in str(e) and (str(a) in str(e) or str(b) in str(e)), str(e)


@FUZZ
@given(data=anything)
def test_sst_trees(folder, data):
    path = put(folder, "trees.txt", data)
    check(lambda: trees.read_trees(path, phrases=True), path)


LABELS = ["0", "3", "4", "5", "-1", "\u00b2", "\u0663", "x", ""]
tree_text = st.recursive(st.sampled_from(["a", "b", "(1 a)", "(5 x)", "()", ")"]),
                         lambda inner: st.tuples(st.sampled_from(LABELS), st.lists(inner, max_size=3))
                         .map(lambda t: f"({t[0]} " + " ".join(t[1]) + ")"), max_leaves=30)


@FUZZ
@given(line=tree_text)
def test_tree_parser_on_tree_shaped_text(line):
    try:
        phrases = trees.parse_tree(line, "t.txt", 1)
    except DataError as e:
        assert str(e).startswith("t.txt:1: bad tree: "), str(e)
    else:
        assert phrases and all(0 <= label < trees.NUM_LABELS for _, label in phrases)


def vector_bytes(rows: list[tuple[bytes, list[float]]], dim: int, header: bytes | None) -> bytes:
    body = b"".join(w + b" " + struct.pack(f"<{dim}f", *v) for w, v in rows)
    return (header if header is not None else f"{len(rows)} {dim}\n".encode()) + body


values = st.floats(width=32, allow_nan=True, allow_infinity=True)
binary_vectors = st.builds(
    lambda dim, rows, header, cut: vector_bytes([(w, v[:dim] + [0.0] * (dim - len(v[:dim]))) for w, v in rows], dim,
                                                header)[:cut],
    st.integers(1, 4), st.lists(st.tuples(st.sampled_from([b"good", b"bad", b"", b"a b", b"\xff", b"\n"]),
                                          st.lists(values, max_size=4)), max_size=4),
    st.one_of(st.none(), st.sampled_from([b"", b"3\n", b"2 2\n", b"1 99999\n", b"x y\n", b"0 4\n"])),
    st.integers(0, 200))


@FUZZ
@given(data=st.one_of(anything, binary_vectors), fmt=st.sampled_from(list(embeddings._FORMATS)))
def test_word_vectors(folder, data, fmt):
    vocab = Vocabulary.build([["good", "bad", "a"]])
    path = put(folder, "vectors.bin" if fmt == "word2vec_bin" else "vectors.txt", data)

    def load():
        matrix, _ = embeddings.load_word_vectors(path, vocab, fmt=fmt)
        assert all(math.isfinite(float(x)) for x in matrix.ravel())

    check(load, path)


@FUZZ
@given(data=anything)
def test_vocabulary_and_json(folder, data):
    path = put(folder, "vocab.json", data)
    check(lambda: Vocabulary.load(path), path)
    check(lambda: readers.read_json(path), path)


@FUZZ
@given(data=anything)
@pytest.mark.filterwarnings("ignore::jaxcnn.train.writers.MetricsWarning")
def test_metrics_file(folder, data):
    path = put(folder, "metrics.jsonl", data)
    check(lambda: read_metrics(path), path)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                           max_leaves=12)
config_dicts = st.dictionaries(st.sampled_from(["data", "model", "optim", "train", "other"]),
                               st.one_of(json_values, st.dictionaries(
                                   st.sampled_from(["dataset", "epochs", "lr", "windows", "dropout", "fold", "x"]),
                                   json_values, max_size=3)), max_size=3)


@FUZZ
@given(d=config_dicts)
def test_config_dicts(d):
    try:
        Config.from_dict(d).validate()
    except ConfigError as e:
        assert "\n" not in str(e), str(e)
