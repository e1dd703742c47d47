"""Pretrained word vectors: stream a vector file and keep only the rows of vocabulary words.

Formats:
  "word2vec_bin"  header `N D\\n`, then per word: the UTF-8 word, a space, D little-endian float32, (a newline).
  "word2vec_txt"  header `N D`, then one `word v1 ... vD` line per word.
  "fasttext"      `.vec` files: the same layout as word2vec_txt.
  "glove"         no header; one `word v1 ... vD` line per word; D is read off the first line.
  "auto"          by the first line and the file name: a `N D` header with a `.bin` name or binary data after it
                  is word2vec_bin, a header followed by text is word2vec_txt, no header is glove.
A `.gz` suffix is decompressed on the fly (byte offsets in errors then count uncompressed bytes).
Fields of text formats are separated by single spaces. Bounded memory: D may be at most `MAX_DIM` and a text line at
most `MAX_LINE_BYTES` long, so a wrong header or a binary file read as text fails at once instead of allocating.

Matching: each vocabulary word takes the file row spelt exactly like it; a word the file lacks takes the first row
whose lowercased form equals its lowercased form (so a lowercased corpus still finds "Paris" in a cased file).
Reserved ids (padding, unknown, BOS/EOS) are never looked up. Only rows that match are parsed and validated; the
others are counted and skipped, so a 3.6 GB GoogleNews file streams through in one pass with little memory.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import pathlib
import re
import zlib
from collections.abc import Iterator
from typing import IO, Literal

import numpy as np

from jaxcnn.data.vocab import Vocabulary
from jaxcnn.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Format = Literal["auto", "word2vec_bin", "word2vec_txt", "glove", "fasttext"]
_FORMATS = ("auto", "word2vec_bin", "word2vec_txt", "glove", "fasttext")
_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")
_CHUNK = 1 << 20
_MAX_WORD_BYTES = 4096
MAX_DIM = 10_000
MAX_LINE_BYTES = 1 << 20
# Missing words: `missing`; found by lowercase fallback: `lower`; found exactly: `exact`.
_MISSING, _LOWER, _EXACT = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class VectorReport:
    """What a vector file contributed.

    Attributes:
      path: the vector file.
      fmt: the format it was read as.
      dim: vector size D.
      found: vocabulary words (reserved ids excluded) that got a pretrained vector.
      total: vocabulary words (reserved ids excluded).
      file_words: rows in the file.
      lowercase_matches: how many of `found` matched only by lowercase.
      unknown_init: how the other rows were drawn ("uniform" or "match").
      unknown_scale: the bound a of U(-a, a) (for "match", the mean of the per-dimension bounds).
      found_mask: <bool>[len(vocab)]: which ids got a pretrained vector.
    """

    path: str
    fmt: str
    dim: int
    found: int
    total: int
    file_words: int
    lowercase_matches: int
    unknown_init: str
    unknown_scale: float
    found_mask: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def coverage(self) -> float:
        """Fraction of vocabulary words found in the file."""
        return self.found / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (f"{self.path}: {self.fmt}, {self.file_words} words x {self.dim}; found {self.found}/{self.total} "
                f"vocabulary words ({100 * self.coverage:.2f}%, {self.lowercase_matches} by lowercase); "
                f"the other {self.total - self.found} drawn {self.unknown_init} U(-a, a), a={self.unknown_scale:.4g}")


def load_word_vectors(path: str | os.PathLike, vocab: Vocabulary, *, fmt: Format = "auto",
                      unknown_init: Literal["uniform", "match"] = "uniform", scale: float = 0.25, seed: int = 0,
                      normalize: bool = False, pad_zero: bool = True) -> tuple[np.ndarray, VectorReport]:
    """Builds an embedding matrix for `vocab` from a pretrained vector file.

    Args:
      path: the vector file (see the module docstring for formats).
      vocab: the training vocabulary; row i of the result belongs to id i.
      fmt: the file format, or "auto" to detect it.
      unknown_init: rows without a pretrained vector are U(-a, a): a = `scale` for "uniform" (Kim: 0.25); for
        "match", per dimension a = sqrt(3 * variance of the found vectors), so their variance matches.
      scale: the bound for "uniform".
      seed: seeds the random rows; the same seed and vocabulary give the same matrix.
      normalize: L2-normalise the pretrained rows (before "match" measures their variance).
      pad_zero: make the padding row zero, as Kim does.

    Returns:
      (<float32>[len(vocab), D] matrix, VectorReport).
    """
    if fmt not in _FORMATS:
        raise ConfigError(f"--embeddings-format: unknown format {fmt!r}; choose one of {', '.join(_FORMATS)}")
    if unknown_init not in ("uniform", "match"):
        raise ConfigError(f"--unknown-init: must be 'uniform' or 'match', got {unknown_init!r}")
    path = pathlib.Path(path)
    if not path.is_file():
        raise DataError("vector file not found", path=path)
    if fmt == "auto":
        fmt = _detect_format(path)
    try:
        with _open(path) as f:
            dim, entries = (_binary_entries(f, path) if fmt == "word2vec_bin"
                            else _text_entries(f, path, header=fmt != "glove"))
            found_rows, status, file_words = _collect(entries, dim, vocab, path)
    except (OSError, EOFError, zlib.error) as e:  # unreadable file or broken .gz
        raise DataError(f"cannot read vector file: {e.__class__.__name__}: {e}", path=path) from e
    matrix, used, a = _fill(found_rows, status, vocab, dim, unknown_init=unknown_init, scale=scale, seed=seed,
                            normalize=normalize, pad_zero=pad_zero)
    report = VectorReport(path=str(path), fmt=fmt, dim=dim, found=int((status > _MISSING).sum()),
                          total=len(vocab) - vocab.num_special, file_words=file_words,
                          lowercase_matches=int((status == _LOWER).sum()), unknown_init=used, unknown_scale=a,
                          found_mask=status > _MISSING)
    log.info("%s", report)
    return matrix, report


def _open(path: pathlib.Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _detect_format(path: pathlib.Path) -> str:
    with _open(path) as f:
        try:
            sample = f.read(1 << 16)
        except (OSError, EOFError) as e:
            raise DataError(f"cannot read vector file: {e}", path=path) from e
    if not sample.strip():
        raise DataError("empty vector file", path=path)
    first, _, rest = sample.partition(b"\n")
    name = path.name[:-3] if path.suffix == ".gz" else path.name
    if not _HEADER.match(first):
        if name.endswith(".bin"):
            raise DataError(f"expected a word2vec header 'count dim' on the first line, found {_show(first)}",
                            path=path, line=1)
        return "glove"
    if name.endswith(".bin") or not _looks_like_text(rest):
        return "word2vec_bin"
    return "word2vec_txt"


def _looks_like_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        # A sample cut through a multi-byte character is still text.
        if e.start < len(data) - 4:
            return False
        text = data[: e.start].decode("utf-8")
    return not any(c < " " and c not in "\t\r\n" for c in text)


def _show(raw: bytes) -> str:
    return repr(raw[:40].decode("utf-8", errors="replace"))


class _ByteReader:
    """Buffered reads of delimited words and fixed-size records, with the absolute byte offset kept."""

    def __init__(self, f: IO[bytes], offset: int):
        self._f, self._buf, self._pos, self._base = f, b"", 0, offset

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def _more(self) -> bool:
        chunk = self._f.read(_CHUNK)
        if not chunk:
            return False
        self._base += self._pos
        self._buf, self._pos = self._buf[self._pos:] + chunk, 0
        return True

    def until_space(self) -> bytes | None:
        """The bytes up to the next space (consumed, space excluded); None at end of file; whatever is left if
        the file ends without a space."""
        while (i := self._buf.find(b" ", self._pos)) < 0:
            if len(self._buf) - self._pos > _MAX_WORD_BYTES or not self._more():
                rest, self._pos = self._buf[self._pos:], len(self._buf)
                return rest or None
        word, self._pos = self._buf[self._pos:i], i + 1
        return word

    def take(self, n: int) -> bytes:
        """The next n bytes (fewer at end of file)."""
        while len(self._buf) - self._pos < n and self._more():
            pass
        out = self._buf[self._pos:self._pos + n]
        self._pos += len(out)
        return out

    def rest(self) -> bytes:
        while self._more():
            pass
        return self._buf[self._pos:]


def _read_header(f: IO[bytes], path: pathlib.Path) -> tuple[int, int, bytes]:
    first = _readline(f, path, 1)
    m = _HEADER.match(first)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise DataError(f"expected a header 'count dim' (two positive integers), found {_show(first.rstrip())}; "
                        "for files without a header use --embeddings-format glove", path=path, line=1)
    return int(m.group(1)), _check_dim(int(m.group(2)), path), first


def _check_dim(dim: int, path: pathlib.Path) -> int:
    if dim > MAX_DIM:
        raise DataError(f"vectors of {dim} dimensions: more than the {MAX_DIM} any word-vector file has (a wrong "
                        f"header?)", path=path, line=1)
    return dim


def _readline(f: IO[bytes], path: pathlib.Path, line_no: int) -> bytes:
    line = f.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise DataError(f"line longer than {MAX_LINE_BYTES} bytes: not a word-vector text file (a binary file needs "
                        "--embeddings-format word2vec_bin)", path=path, line=line_no)
    return line


def _binary_entries(f: IO[bytes], path: pathlib.Path) -> tuple[int, Iterator[tuple[str, int, bytes]]]:
    count, dim, header = _read_header(f, path)

    def entries() -> Iterator[tuple[str, int, bytes]]:
        reader, size = _ByteReader(f, len(header)), 4 * dim
        for i in range(count):
            start = reader.offset
            raw_word = reader.until_space()
            word = raw_word.lstrip(b"\n\r") if raw_word is not None else b""
            if not word:
                raise DataError(f"file ends after {i} of the {count} vectors its header announces (truncated?)",
                                path=path, offset=start)
            if len(word) > _MAX_WORD_BYTES:
                raise DataError("no space after a word within 4096 bytes: not a word2vec binary file",
                                path=path, offset=start)
            vec_at = reader.offset
            raw = reader.take(size)
            if len(raw) < size:
                raise DataError(f"file ends inside vector {i + 1} of {count} (truncated?)", path=path, offset=vec_at)
            if i == 0 and _looks_like_text(raw):
                raise DataError("vector bytes look like text: use --embeddings-format word2vec_txt (or fasttext) for text files",
                                path=path, offset=vec_at)
            # Words are UTF-8, but some published files hold broken bytes; those can match no vocabulary word.
            yield word.decode("utf-8", errors="replace"), vec_at, raw
        tail_at = reader.offset
        if reader.rest().strip():
            raise DataError(f"data after the {count} vectors the header announces (wrong header count?)",
                            path=path, offset=tail_at)

    return dim, entries()


def _text_entries(f: IO[bytes], path: pathlib.Path, header: bool) -> tuple[int, Iterator[tuple[str, int, str]]]:
    count, first_line_no = None, 1
    if header:
        count, dim, _ = _read_header(f, path)
        first_line_no = 2
        first = _readline(f, path, 2)
    else:
        first = _readline(f, path, 1)
        if _HEADER.match(first):
            raise DataError("the first line looks like a 'count dim' header: use --embeddings-format word2vec_txt or fasttext",
                            path=path, line=1)
        dim = _check_dim(len(_decode(first, path, 1).split()) - 1, path)
        if dim < 1:
            raise DataError("expected 'word v1 v2 ...' (separated by spaces) on the first line", path=path, line=1)

    def entries() -> Iterator[tuple[str, int, str]]:
        n, line_no, line = 0, first_line_no, first
        while line:
            text = _decode(line, path, line_no)
            if not text.strip():
                raise DataError("blank line", path=path, line=line_no)
            word, space, rest = text.rstrip("\r\n").partition(" ")
            if not space:
                raise DataError(f"expected 'word v1 ... v{dim}' separated by single spaces, found "
                                f"{_show(line.rstrip())}", path=path, line=line_no)
            n += 1
            yield word, line_no, rest
            line, line_no = _readline(f, path, line_no + 1), line_no + 1
        if count is not None and n != count:
            raise DataError(f"the header announces {count} vectors but the file holds {n} (truncated?)",
                            path=path, line=line_no - 1)

    return dim, entries()


def _decode(line: bytes, path: pathlib.Path, line_no: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError("not UTF-8 text: for word2vec binary files use --embeddings-format word2vec_bin", path=path,
                        line=line_no) from e


def _collect(entries: Iterator[tuple[str, int, bytes | str]], dim: int, vocab: Vocabulary, path: pathlib.Path
             ) -> tuple[dict[int, np.ndarray], np.ndarray, int]:
    stoi = vocab.stoi
    lower: dict[str, list[int]] = {}
    for tok, i in stoi.items():
        lower.setdefault(tok.lower(), []).append(i)
    status = np.zeros(len(vocab), dtype=np.int8)
    rows: dict[int, np.ndarray] = {}
    file_words = 0
    for word, where, raw in entries:
        file_words += 1
        exact = stoi.get(word)
        wanted = [] if exact is None or status[exact] == _EXACT else [(exact, _EXACT)]
        wanted += [(i, _LOWER) for i in lower.get(word.lower(), ()) if status[i] == _MISSING and i != exact]
        if not wanted:
            continue
        vec = _parse(raw, where, word, dim, path)
        if vec is None:
            continue
        for i, how in wanted:
            rows[i], status[i] = vec, how
    return rows, status, file_words


def _parse(raw: bytes | str, where: int, word: str, dim: int, path: pathlib.Path) -> np.ndarray | None:
    """One vector, validated; None for a text row whose word holds spaces (GloVe 840B has a few, e.g. ". . .")."""
    if isinstance(raw, bytes):
        vec, loc = np.frombuffer(raw, dtype="<f4").astype(np.float32), {"offset": where}
    else:
        values = raw.split()
        if len(values) > dim and not _is_number(values[len(values) - dim - 1]):
            return None  # the word continues past its first space; no tokenizer makes such words
        if len(values) != dim:
            raise DataError(f"vector of {word!r} has {len(values)} values, expected {dim}", path=path, line=where)
        try:
            vec = np.array(values, dtype=np.float32)
        except ValueError:
            bad = next(v for v in values if not _is_number(v))
            raise DataError(f"non-numeric value {bad[:20]!r} in the vector of {word!r}", path=path,
                            line=where) from None
        loc = {"line": where}
    if not np.isfinite(vec).all():
        raise DataError(f"NaN or infinite value in the vector of {word!r}", path=path, **loc)
    return vec


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _fill(rows: dict[int, np.ndarray], status: np.ndarray, vocab: Vocabulary, dim: int, *, unknown_init: str,
          scale: float, seed: int, normalize: bool, pad_zero: bool) -> tuple[np.ndarray, str, float]:
    """Random rows first (one draw for the whole matrix, so results do not depend on file order), then the
    pretrained rows on top."""
    found = np.stack([rows[i] for i in sorted(rows)]) if rows else np.zeros((0, dim), np.float32)
    if normalize and len(found):
        norms = np.linalg.norm(found, axis=1, keepdims=True)
        found = found / np.where(norms > 0, norms, 1)
    bound: float | np.ndarray = scale
    used = "uniform"
    if unknown_init == "match":
        if len(found) >= 2:
            bound, used = np.sqrt(3.0 * found.var(axis=0)), "match"
        else:
            log.warning("unknown_init='match' needs at least 2 pretrained vectors, found %d: using U(-%g, %g)",
                        len(found), scale, scale)
            used = "uniform (too few vectors to match)"
    matrix = (np.random.default_rng(seed).uniform(-1.0, 1.0, size=(len(vocab), dim)) * bound).astype(np.float32)
    if rows:
        matrix[sorted(rows)] = found
    if pad_zero:
        matrix[vocab.pad_id] = 0.0
    return matrix, used, float(np.mean(bound))
