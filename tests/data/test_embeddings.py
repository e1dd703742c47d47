import gzip
import math

import numpy as np
import pytest

from jaxcnn.data.embeddings import load_word_vectors
from jaxcnn.data.registry import load_splits
from jaxcnn.data.tokenize import get_tokenizer
from jaxcnn.data.vocab import Vocabulary
from jaxcnn.errors import ConfigError, DataError

DIM = 4
RNG = np.random.default_rng(7)
# "The" comes before "the" so the exact match must beat an earlier lowercase one; "Paris" only matches by case.
FILE = {w: RNG.normal(size=DIM).astype(np.float32) for w in ["The", "the", "film", "Paris", "unused", "good"]}
VOCAB = Vocabulary.build([["the", "film", "paris", "good", "missing"]])


def write_w2v_bin(path, vectors, newline=True):
    with open(path, "wb") as f:
        f.write(f"{len(vectors)} {DIM}\n".encode())
        for w, v in vectors.items():
            f.write(w.encode() + b" " + np.asarray(v, "<f4").tobytes() + (b"\n" if newline else b""))


def write_text(path, vectors, header, trailing=""):
    lines = [f"{len(vectors)} {DIM}"] if header else []
    lines += [w + " " + " ".join(format(float(x), ".9g") for x in v) + trailing for w, v in vectors.items()]
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


WRITERS = {
    "word2vec_bin": lambda p: write_w2v_bin(p, FILE),
    "word2vec_txt": lambda p: write_text(p, FILE, header=True),
    "fasttext": lambda p: write_text(p, FILE, header=True, trailing=" "),
    "glove": lambda p: write_text(p, FILE, header=False),
}
SUFFIX = {"word2vec_bin": ".bin", "word2vec_txt": ".txt", "fasttext": ".vec", "glove": ".txt"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vectors")
    out = {}
    for fmt, write in WRITERS.items():
        out[fmt] = d / f"{fmt}{SUFFIX[fmt]}"
        write(out[fmt])
    out["gz"] = d / "glove.txt.gz"
    write_text(out["gz"], FILE, header=False)
    out["no_newline_bin"] = d / "tight.bin"
    write_w2v_bin(out["no_newline_bin"], FILE, newline=False)
    return out


@pytest.mark.parametrize("name", list(WRITERS) + ["gz", "no_newline_bin"])
@pytest.mark.parametrize("auto", [False, True])
def test_all_formats_give_the_same_matrix(files, name, auto):
    fmt = "auto" if auto else {"gz": "glove", "no_newline_bin": "word2vec_bin"}.get(name, name)
    matrix, report = load_word_vectors(files[name], VOCAB, fmt=fmt, seed=3)
    reference, _ = load_word_vectors(files["word2vec_bin"], VOCAB, seed=3)
    np.testing.assert_array_equal(matrix, reference)
    v = VOCAB.stoi
    np.testing.assert_array_equal(matrix[v["the"]], FILE["the"])
    np.testing.assert_array_equal(matrix[v["paris"]], FILE["Paris"])
    np.testing.assert_array_equal(matrix[VOCAB.pad_id], 0)
    assert np.abs(matrix[v["missing"]]).max() <= 0.25 and np.abs(matrix[v["missing"]]).max() > 0
    assert (report.dim, report.found, report.total, report.file_words, report.lowercase_matches) == (4, 4, 5, 6, 1)
    assert report.coverage == pytest.approx(0.8)
    expected_fmt = {"gz": "glove", "no_newline_bin": "word2vec_bin"}.get(name, name)
    assert report.fmt == ("word2vec_txt" if auto and expected_fmt == "fasttext" else expected_fmt)
    assert "found 4/5 vocabulary words (80.00%, 1 by lowercase)" in str(report)


def test_unknown_init_match_normalize_and_seed(files):
    big = Vocabulary.build([["the", "film", "good"] + [f"w{i}" for i in range(4000)]])
    m1, r1 = load_word_vectors(files["word2vec_bin"], big, unknown_init="match", seed=1)
    found = np.stack([FILE[w] for w in ["the", "film", "good"]])
    a = np.sqrt(3 * found.var(axis=0))
    random_rows = m1[5:]
    np.testing.assert_allclose(random_rows.var(axis=0), found.var(axis=0), rtol=0.1)
    assert (np.abs(random_rows) <= a + 1e-6).all()
    assert r1.unknown_init == "match" and r1.unknown_scale == pytest.approx(float(a.mean()), rel=1e-5)
    m2, _ = load_word_vectors(files["word2vec_bin"], big, unknown_init="match", seed=1)
    m3, _ = load_word_vectors(files["word2vec_bin"], big, unknown_init="match", seed=2)
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1[5:], m3[5:])
    normed, _ = load_word_vectors(files["word2vec_bin"], VOCAB, normalize=True, pad_zero=False)
    np.testing.assert_allclose(np.linalg.norm(normed[2:6], axis=1), 1.0, rtol=1e-6)
    assert np.abs(normed[VOCAB.pad_id]).sum() > 0


def test_glove_words_with_spaces_are_skipped_not_misread(tmp_path):
    vocab = Vocabulary.build([[".", "at"]])
    path = tmp_path / "glove.840B.txt"
    path.write_text("the 0 0 0 0\n. . . 1 2 3 4\nat name@domain.com 5 6 7 8\n. 0.5 0.5 0.5 0.5\nat 1 1 1 1\n",
                    encoding="utf-8")
    matrix, report = load_word_vectors(path, vocab, fmt="glove")
    np.testing.assert_array_equal(matrix[vocab.get(".")], 0.5)
    np.testing.assert_array_equal(matrix[vocab.get("at")], 1.0)
    assert report.file_words == 5 and report.found == 2


def _bin_bytes():
    import io

    buf = io.BytesIO()
    buf.write(f"3 {DIM}\n".encode())
    for w in ["the", "film", "good"]:
        buf.write(w.encode() + b" " + FILE[w].astype("<f4").tobytes() + b"\n")
    return buf.getvalue()


@pytest.mark.parametrize("content, fmt, message", [
    ("hello world\nthe 1 2 3 4\n", "word2vec_txt", r"x.txt:1: expected a header 'count dim'"),
    ("3 4\nthe 1 2 3 4\n", "glove", r"x.txt:1: the first line looks like a 'count dim' header"),
    ("the 1 2 3 4\nfilm 1 2 3\n", "glove", r"x.txt:2: vector of 'film' has 3 values, expected 4"),
    ("the 1 2 3 4\nfilm 1 2 3 4 5\n", "glove", r"x.txt:2: vector of 'film' has 5 values, expected 4"),
    ("the 1 2 3 4\nfilm 1 abc 3 4\n", "glove", r"x.txt:2: non-numeric value 'abc' in the vector of 'film'"),
    ("the 1 2 nan 4\n", "glove", r"x.txt:1: NaN or infinite value in the vector of 'the'"),
    ("the 1 2 inf 4\n", "glove", r"x.txt:1: NaN or infinite value"),
    ("3 4\nthe 1 2 3 4\n", "word2vec_txt", r"x.txt:2: the header announces 3 vectors but the file holds 1"),
    ("the 1 2 3 4\n\nfilm 1 2 3 4\n", "glove", r"x.txt:2: blank line"),
    ("2 4\nthe 1 2 3 4\nfilm 1 2 3 4\n", "word2vec_bin", r"x.txt: byte \d+: vector bytes look like text"),
    ("", "auto", r"x.txt: empty vector file"),
])
def test_text_errors(tmp_path, content, fmt, message):
    path = tmp_path / "x.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        load_word_vectors(path, VOCAB, fmt=fmt)
    assert "\n" not in str(err.value)


def test_binary_errors(tmp_path):
    data = _bin_bytes()
    path = tmp_path / "v.bin"
    header = len(f"3 {DIM}\n")
    path.write_bytes(data[:-7])  # cut inside the last vector
    with pytest.raises(DataError, match=r"v.bin: byte \d+: file ends inside vector 3 of 3"):
        load_word_vectors(path, VOCAB)
    path.write_bytes(data[: header + 2 * (4 + 4 * DIM + 1)])  # cut after the second entry
    with pytest.raises(DataError, match=r"v.bin: byte \d+: file ends after 2 of the 3 vectors"):
        load_word_vectors(path, VOCAB)
    path.write_bytes(data + b"extra " + b"\0" * 4 * DIM)
    with pytest.raises(DataError, match=r"data after the 3 vectors the header announces"):
        load_word_vectors(path, VOCAB)
    nan = data.replace(FILE["the"].astype("<f4").tobytes(), np.array([0, math.nan, 0, 0], "<f4").tobytes())
    path.write_bytes(nan)
    with pytest.raises(DataError, match=rf"v.bin: byte {header + 4}: NaN or infinite value in the vector of 'the'"):
        load_word_vectors(path, VOCAB)
    path.write_bytes(b"the 1 2 3 4\n")
    with pytest.raises(DataError, match=r"v.bin:1: expected a word2vec header"):
        load_word_vectors(path, VOCAB)
    txt = tmp_path / "binary.txt"
    txt.write_bytes(data)
    with pytest.raises(DataError, match=r"binary.txt:1: the first line looks like a 'count dim' header"):
        load_word_vectors(txt, VOCAB, fmt="glove")


def test_truncated_gzip(tmp_path):
    path = tmp_path / "v.txt.gz"
    data = gzip.compress(b"the 1 2 3 4\n" * 2000)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"v.txt.gz: cannot read vector file: EOFError"):
        load_word_vectors(path, VOCAB, fmt="glove")


def test_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="nope.bin: vector file not found"):
        load_word_vectors(tmp_path / "nope.bin", VOCAB)
    with pytest.raises(ConfigError, match="--embeddings-format"):
        load_word_vectors(tmp_path / "nope.bin", VOCAB, fmt="bin")


def test_benchmark_vectors_cover_mr(data_dir):
    texts = load_splits("mr", data_dir)["train"]["text"][:]
    vocab = Vocabulary.build(get_tokenizer("kim").batch(texts))
    matrix, report = load_word_vectors(data_dir / "vectors" / "minilm-l6-words-384.bin", vocab, unknown_init="match")
    assert matrix.shape == (len(vocab), 384) and matrix.dtype == np.float32
    assert (report.fmt, report.file_words, report.total, report.found) == ("word2vec_bin", 31949, 18765, 18765)
    assert report.coverage == 1.0
    # README: about 0.053 per dimension, so a "matched" bound is about sqrt(3) * 0.053
    assert 0.06 < report.unknown_scale < 0.12
    assert np.isfinite(matrix).all() and not matrix[0].any()
