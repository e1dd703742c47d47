"""Line-oriented readers for local text files, each bad line a one-line DataError naming file and line.

Encoding ("auto"): a UTF-8 or UTF-16 byte-order mark is honoured; otherwise the file is read as UTF-8 if it is
valid UTF-8, else as latin-1 (MR and TREC are latin-1). latin-1 maps every byte to one character, so no byte is
lost or altered. A file that is not valid UTF-8 but holds UTF-8 multi-byte characters elsewhere is refused: it
mixes encodings, and reading it as latin-1 would garble those characters. Lines end at "\\n" only (a trailing
"\\r" is dropped): latin-1 byte 0x85 is a line break for `str.splitlines`, and MR holds 23 of them inside
sentences.

Bounded memory: a line longer than `MAX_LINE_BYTES` (1 MiB; no sentence or document of these sets comes close)
is refused before anything is parsed, since one such line would set the padded length of every example.

Compressed files (`.xz`, `.gz`, `.bz2`) are read as the text they hold (jaxcnn's bundled MR and TREC are `.xz`),
up to `MAX_DECOMPRESSED_BYTES`.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import itertools
import json
import lzma
import os
import pathlib
import re
import zlib
from collections.abc import Iterator, Sequence
from typing import IO, Any

from jaxcnn.errors import ConfigError, DataError

MAX_LINE_BYTES = 1 << 20
MAX_DECOMPRESSED_BYTES = 1 << 31
_COMPRESSED = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
_KIM_LINE = re.compile(r"([^ \t]*)(?:[ \t](.*))?\Z", re.DOTALL)
# A well-formed UTF-8 multi-byte character (RFC 3629). latin-1 text almost never holds one by chance (MR and TREC
# hold none), so finding one in a file that fails to decode as UTF-8 means mixed encodings.
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}")
_INT = re.compile(r"-?[0-9]+\Z")
_MAX_LABEL_DIGITS = 9  # int() of a long digit string is slow (refused past 4300 digits); no class id is that long
_TREC_LABEL = re.compile(r"([A-Z]+):(\S+)\Z")


def read_nonempty_bytes(path: pathlib.Path) -> bytes:
    """A file's bytes (a compressed file's: decompressed); a missing, unreadable, corrupt or blank file is a
    one-line DataError naming it."""
    opener = _COMPRESSED.get(path.suffix.lower())
    try:
        if opener is None:
            raw = path.read_bytes()
        else:
            with opener(path, "rb") as f:
                raw = f.read(MAX_DECOMPRESSED_BYTES + 1)
            if len(raw) > MAX_DECOMPRESSED_BYTES:
                raise DataError(f"decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes", path=path)
    except FileNotFoundError as e:
        raise DataError("file not found", path=path) from e
    except (EOFError, lzma.LZMAError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"corrupt {path.suffix} file ({e.__class__.__name__}: {e})", path=path) from e
    except OSError as e:  # bz2 reports a corrupt file as OSError("Invalid data stream")
        raise DataError(f"cannot read: {e.strerror or e}", path=path) from e
    if not raw.strip():
        raise DataError("empty file", path=path)
    return raw


def read_text(path: str | os.PathLike, encoding: str = "auto") -> tuple[str, str]:
    """Reads a whole text file; returns (text, encoding used)."""
    path = pathlib.Path(path)
    raw = read_nonempty_bytes(path)
    _check_line_lengths(raw, path)
    if encoding != "auto":
        return _decode(raw, path, encoding), encoding
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            return _decode(raw, path, name), name
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise DataError("NUL byte: not a text file (expected UTF-8 or latin-1 text)", path=path, line=line)
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        if _UTF8_MULTIBYTE.search(raw):
            line = raw[: e.start].count(b"\n") + 1
            raise DataError(f"byte 0x{raw[e.start]:02x} (offset {e.start}) is not UTF-8, but the file holds UTF-8 "
                            f"characters elsewhere: mixed encodings; re-save it as UTF-8", path=path, line=line) from e
        return raw.decode("latin-1"), "latin-1"


def _check_line_lengths(raw: bytes, path: pathlib.Path) -> None:
    """Refuses a line longer than MAX_LINE_BYTES (counted in bytes, whatever the encoding)."""
    if len(raw) <= MAX_LINE_BYTES:
        return
    for line_no, line in enumerate(raw.split(b"\n"), 1):
        if len(line) > MAX_LINE_BYTES:
            raise DataError(f"line of {len(line)} bytes, over the {MAX_LINE_BYTES}-byte limit for one example (is "
                            f"this one example per line?)", path=path, line=line_no)


def _decode(raw: bytes, path: pathlib.Path, encoding: str) -> str:
    try:
        return raw.decode(encoding)
    except LookupError as e:
        raise ConfigError(f"unknown text encoding {encoding!r}") from e
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"not valid {encoding} (byte 0x{raw[e.start]:02x}) at offset {e.start}", path=path,
                        line=line) from e


def read_lines(path: str | os.PathLike, encoding: str = "auto") -> list[str]:
    """The lines of a text file, without line terminators."""
    text, _ = read_text(path, encoding)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def decode_line(raw: bytes, where: str, line_no: int) -> str:
    """One line of input that comes without a file to look at as a whole (standard input, a command-line
    argument): UTF-8 if it is valid UTF-8, else latin-1 (no byte is lost); a NUL byte is a DataError."""
    if b"\x00" in raw:
        raise DataError("NUL byte: not text (expected UTF-8 or latin-1 lines)", path=where, line=line_no)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def stream_lines(stream: IO[bytes], where: str = "<stdin>") -> Iterator[str]:
    """The lines of a binary stream, decoded one at a time (`decode_line`) in bounded memory: a line longer than
    MAX_LINE_BYTES is a DataError naming it. A UTF-8 byte-order mark at the start is dropped."""
    for line_no in itertools.count(1):
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise DataError(f"line longer than the {MAX_LINE_BYTES}-byte limit for one input", path=where,
                            line=line_no)
        if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        raw = raw[:-1] if raw.endswith(b"\n") else raw
        yield decode_line(raw[:-1] if raw.endswith(b"\r") else raw, where, line_no)


def _blank(path: str | os.PathLike, line_no: int) -> DataError:
    return DataError("blank line (every line must hold an example)", path=path, line=line_no)


def read_kim(path: str | os.PathLike, num_classes: int | None = None, encoding: str = "auto"
             ) -> tuple[list[str], list[int]]:
    """Reads `<label> <sentence>` lines (Kim / harvardnlp format, integer labels from 0).

    The sentence is kept exactly as written after the single separating space or tab. A label with nothing after it
    is an empty sentence, as in Kim's code, whose Table 1 counts them (CR's `custrev.all` has 4, MPQA's
    `mpqa.all` 3); it encodes to padding only. A blank line is an error.
    """
    texts, labels = [], []
    for i, line in enumerate(read_lines(path, encoding), 1):
        if not line.strip():
            raise _blank(path, i)
        label, text = _KIM_LINE.match(line).groups()
        if not _INT.match(label):
            raise DataError(f"missing or non-integer label {label[:20]!r} (expected '<label> <sentence>' with a "
                            f"class id from 0)", path=path, line=i)
        if len(label.lstrip("-")) > _MAX_LABEL_DIGITS:
            raise DataError(f"label {label[:12]}... is out of range; labels are class ids from 0", path=path, line=i)
        value = int(label)
        if value < 0:
            raise DataError(f"label {value} is negative; labels are class ids from 0", path=path, line=i)
        if num_classes is not None and value >= num_classes:
            raise DataError(f"label {value} outside the classes 0..{num_classes - 1}", path=path, line=i)
        texts.append(text or "")
        labels.append(value)
    return texts, labels


def read_sentences(path: str | os.PathLike, encoding: str = "auto") -> list[str]:
    """One sentence a line (MR's rt-polarity.pos/.neg)."""
    lines = read_lines(path, encoding)
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise _blank(path, i)
    return lines


def read_trec(path: str | os.PathLike, coarse_names: Sequence[str], encoding: str = "auto"
              ) -> tuple[list[str], list[str], list[str]]:
    """Reads original TREC lines `COARSE:fine question...`; returns (texts, coarse labels, fine labels)."""
    texts, coarse, fine = [], [], []
    for i, line in enumerate(read_lines(path, encoding), 1):
        if not line.strip():
            raise _blank(path, i)
        label, _, text = line.partition(" ")
        m = _TREC_LABEL.match(label)
        if not m or m.group(1) not in coarse_names:
            raise DataError(f"expected 'COARSE:fine question' with COARSE one of {', '.join(coarse_names)}, "
                            f"found label {label[:30]!r}", path=path, line=i)
        if not text.strip():
            raise DataError("no question after the label", path=path, line=i)
        texts.append(text)
        coarse.append(m.group(1))
        fine.append(label)
    return texts, coarse, fine


def read_table(path: str | os.PathLike, fmt: str, text_column: str, label_column: str, encoding: str = "auto"
               ) -> tuple[list[str], list[Any], list[int]]:
    """Reads a CSV (header row, standard quoting), TSV (header row, no quoting) or JSON-lines file.

    Returns:
      (texts, raw labels as found: str for CSV/TSV, str or int for JSON, line number of each row).
    """
    if fmt == "jsonl":
        return _read_jsonl(path, text_column, label_column, encoding)
    text, _ = read_text(path, encoding)
    stream = io.StringIO(text, newline="")
    rows = (csv.reader(stream) if fmt == "csv" else csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))
    try:
        header = next(rows, None)
        if header is None:  # e.g. a file that holds only a byte-order mark
            raise DataError("no header row: the file has no text", path=path)
        missing = [c for c in (text_column, label_column) if c not in header]
        if missing:
            raise DataError(f"no column {missing[0]!r}; the header has: {show_names(header)} (wrong delimiter?)",
                            path=path, line=1)
        ti, li = header.index(text_column), header.index(label_column)
        texts, labels, line_nos = [], [], []
        for row in rows:
            if not row:
                raise _blank(path, rows.line_num)
            if len(row) != len(header):
                raise DataError(f"row has {len(row)} fields, the header has {len(header)}", path=path,
                                line=rows.line_num)
            if not row[li].strip():
                raise DataError(f"empty label in column {label_column!r}", path=path, line=rows.line_num)
            texts.append(row[ti])
            labels.append(row[li].strip())
            line_nos.append(rows.line_num)
    except csv.Error as e:
        raise DataError(f"malformed {fmt.upper()}: {e}", path=path, line=rows.line_num) from e
    if not texts:
        raise DataError("no rows after the header", path=path)
    return texts, labels, line_nos


def _read_jsonl(path: str | os.PathLike, text_column: str, label_column: str, encoding: str
                ) -> tuple[list[str], list[Any], list[int]]:
    texts, labels, line_nos = [], [], []
    for i, line in enumerate(read_lines(path, encoding), 1):
        if not line.strip():
            raise _blank(path, i)
        obj = parse_json(line, path, line=i)
        if not isinstance(obj, dict):
            raise DataError("expected a JSON object per line", path=path, line=i)
        for key in (text_column, label_column):
            if key not in obj:
                raise DataError(f"no key {key!r}; the object has: {show_names(obj)}", path=path, line=i)
        if not isinstance(obj[text_column], str):
            raise DataError(f"{text_column!r} must be a string, found {type(obj[text_column]).__name__}",
                            path=path, line=i)
        label = obj[label_column]
        if isinstance(label, bool) or not isinstance(label, (int, str)) or label == "":
            raise DataError(f"{label_column!r} must be an integer or a string (not empty), found {shorten(label)}",
                            path=path, line=i)
        texts.append(obj[text_column])
        labels.append(label)
        line_nos.append(i)
    return texts, labels, line_nos


def show_names(names: Sequence[str], limit: int = 10) -> str:
    """Names for a one-line message: at most `limit`, then "..."; a long name, or one holding a line break or
    another unprintable character, is quoted and shortened."""
    names = [str(n) for n in names]
    shown = ", ".join(n if n.isprintable() and len(n) <= 40 else shorten(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def shorten(value: Any, limit: int = 40) -> str:
    """`repr(value)` (so a line break shows as `\\n`), cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_json(text: str, path: str | os.PathLike, line: int | None = None, what: str = "") -> Any:
    """`json.loads`, with every failure a one-line DataError naming `path` and the line (`line`, else the line
    of the error within `text`); `what` ("vocabulary") names the content in the message."""
    subject = f"{what} is " if what else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = line if line is not None else e.lineno
        raise DataError(f"{subject}not valid JSON: {e.msg} (column {e.colno})", path=path, line=where) from e
    except RecursionError as e:
        raise DataError(f"{subject}JSON nested too deeply", path=path, line=line) from e
    except ValueError as e:  # an integer of more than 4300 digits
        raise DataError(f"{subject}unusable JSON: {str(e).split(':')[0]}", path=path, line=line) from e


def read_json(path: str | os.PathLike, what: str = "") -> Any:
    """A UTF-8 JSON file (a UTF-8 byte-order mark is allowed), any failure a one-line DataError naming it."""
    path = pathlib.Path(path)
    raw = read_nonempty_bytes(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})", path=path,
                        line=raw[: e.start].count(b"\n") + 1) from e
    return parse_json(text, path, what=what)
