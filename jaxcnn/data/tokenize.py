"""Tokenizers: pure functions from a string to a list of tokens, recorded with the model.

A tokenizer is described by a small JSON-able config (`to_config()`), and `get_tokenizer(config)` rebuilds it, so
prediction tokenizes exactly as training did without the training data at hand.

Names:
  "kim"         Kim (2014) `clean_str`, then split on spaces (MR, Subj, CR, MPQA).
  "kim_cased"   the same without lowercasing: Kim's `clean_str(s, TREC=True)` ("every dataset is lower cased
                except for TREC").
  "kim_sst"     Kim's `clean_str_sst`, then split (SST-1, SST-2).
  "whitespace"  `str.split()`; `{"type": "whitespace", "lowercase": true}` lowercases first.
  "regex"       runs of word characters or single punctuation marks (`\\w+|[^\\w\\s]`); lowercases unless
                `{"type": "regex", "lowercase": false}`.
  "char"        one token per non-space character (Chinese, Japanese, ...).
  {"type": "hf", "path": "tokenizer.json"}   a Hugging Face `tokenizers` file (optional extra `jaxcnn[tokenizers]`);
                the config keeps the file's JSON text, so the model does not depend on the path afterwards.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import pathlib
import re
from collections.abc import Sequence
from typing import Any

from jaxcnn.errors import ConfigError, DataError

# Kim's process_data.py, step for step. His replacement strings were written " \( ", which Python keeps as a
# literal backslash plus parenthesis, so his vocabulary holds "\(" and "\?"; we emit the plain "(" and "?" as
# harvardnlp's port does, which is also what pretrained vectors (and the benchmark vector file) contain.
_KIM_DROP = re.compile(r"[^A-Za-z0-9(),!?'`]")
_KIM_SPLITS = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"'s", " 's"), (r"'ve", " 've"), (r"n't", " n't"), (r"'re", " 're"), (r"'d", " 'd"), (r"'ll", " 'll"),
        (r",", " , "), (r"!", " ! "), (r"\(", " ( "), (r"\)", " ) "), (r"\?", " ? "),
    )
)
_SPACES = re.compile(r"\s{2,}")
_REGEX_TOKEN = re.compile(r"\w+|[^\w\s]")


def clean_str(s: str, lowercase: bool = True) -> str:
    """Kim (2014) string cleaning: keeps ASCII letters, digits and `(),!?'``, splits clitics and punctuation
    off, squeezes spaces and lowercases (Kim keeps TREC's case: `lowercase=False`)."""
    s = _KIM_DROP.sub(" ", s)
    for pattern, replacement in _KIM_SPLITS:
        s = pattern.sub(replacement, s)
    s = _SPACES.sub(" ", s).strip()
    return s.lower() if lowercase else s


def clean_str_sst(s: str) -> str:
    """Kim's SST cleaning: the SST text is already tokenized, so only drop odd characters and lowercase."""
    return _SPACES.sub(" ", _KIM_DROP.sub(" ", s)).strip().lower()


class Tokenizer(abc.ABC):
    """A text-to-tokens function with a JSON-able description.

    Attributes:
      name: the registered name ("kim", "kim_sst", "whitespace", "regex", "char", "hf").
    """

    name: str

    @abc.abstractmethod
    def __call__(self, text: str) -> list[str]:
        """Returns the tokens of one text."""

    def batch(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokenizes many texts; subclasses override this where one pass over all texts is faster."""
        return [self(t) for t in texts]

    def to_config(self) -> dict[str, Any]:
        return {"type": self.name}


@dataclasses.dataclass(frozen=True)
class KimTokenizer(Tokenizer):
    """`clean_str` (or `clean_str_sst` when `sst`) followed by a split on spaces; `lowercase=False` keeps case
    (Kim's TREC)."""

    sst: bool = False
    lowercase: bool = True

    @property
    def name(self) -> str:
        return "kim_sst" if self.sst else ("kim" if self.lowercase else "kim_cased")

    def __call__(self, text: str) -> list[str]:
        return (clean_str_sst(text) if self.sst else clean_str(text, self.lowercase)).split()


@dataclasses.dataclass(frozen=True)
class WhitespaceTokenizer(Tokenizer):
    """Splits on runs of whitespace; optionally lowercases."""

    lowercase: bool = False
    name = "whitespace"

    def __call__(self, text: str) -> list[str]:
        return (text.lower() if self.lowercase else text).split()

    def to_config(self) -> dict[str, Any]:
        return {"type": self.name, "lowercase": self.lowercase}


@dataclasses.dataclass(frozen=True)
class RegexTokenizer(Tokenizer):
    """Runs of word characters, or single non-space non-word characters (`\\w+|[^\\w\\s]`)."""

    lowercase: bool = True
    name = "regex"

    def __call__(self, text: str) -> list[str]:
        return _REGEX_TOKEN.findall(text.lower() if self.lowercase else text)

    def to_config(self) -> dict[str, Any]:
        return {"type": self.name, "lowercase": self.lowercase}


@dataclasses.dataclass(frozen=True)
class CharTokenizer(Tokenizer):
    """One token per non-whitespace character, for scripts written without spaces."""

    name = "char"

    def __call__(self, text: str) -> list[str]:
        return [c for c in text if not c.isspace()]


@dataclasses.dataclass(frozen=True)
class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizers` model given as its JSON text; tokens are its `tokens` strings.

    Attributes:
      json_text: the content of the tokenizer.json file.
      path: where it was read from (informational only).
    """

    json_text: str = dataclasses.field(repr=False)
    path: str = ""
    name = "hf"

    def __post_init__(self) -> None:
        try:
            import tokenizers  # the optional extra, imported only when used
        except ImportError as e:
            raise ConfigError("tokenizer 'hf' needs the optional package `tokenizers`: "
                              "pip install 'jaxcnn[tokenizers]'") from e
        try:
            impl = tokenizers.Tokenizer.from_str(self.json_text)
        except Exception as e:  # the Rust side raises plain Exceptions
            raise DataError(f"not a Hugging Face tokenizer file: {str(e).splitlines()[0]}",
                            path=self.path or None) from e
        object.__setattr__(self, "_impl", impl)

    def __call__(self, text: str) -> list[str]:
        return self._impl.encode(text, add_special_tokens=False).tokens

    def batch(self, texts: Sequence[str]) -> list[list[str]]:
        return [e.tokens for e in self._impl.encode_batch(list(texts), add_special_tokens=False)]

    def to_config(self) -> dict[str, Any]:
        return {"type": self.name, "path": self.path, "json": self.json_text}


_SIMPLE = {
    "kim": lambda c: KimTokenizer(sst=False),
    "kim_sst": lambda c: KimTokenizer(sst=True),
    "kim_cased": lambda c: KimTokenizer(lowercase=False),
    "whitespace": lambda c: WhitespaceTokenizer(lowercase=bool(c.get("lowercase", False))),
    "regex": lambda c: RegexTokenizer(lowercase=bool(c.get("lowercase", True))),
    "char": lambda c: CharTokenizer(),
}
_KEYS = {"kim": set(), "kim_sst": set(), "kim_cased": set(), "whitespace": {"lowercase"}, "regex": {"lowercase"}, "char": set(),
         "hf": {"path", "json"}}


def _hf_from_config(config: dict[str, Any]) -> HFTokenizer:
    if "json" in config:
        return HFTokenizer(json_text=config["json"], path=str(config.get("path", "")))
    if "path" not in config:
        raise ConfigError("tokenizer 'hf' needs a 'path' to a tokenizer.json file")
    path = pathlib.Path(config["path"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read tokenizer file: {e.__class__.__name__}: {e}", path=path) from e
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"not JSON: {e.msg}", path=path, line=e.lineno) from e
    except (RecursionError, ValueError) as e:  # nested too deeply; an integer of more than 4300 digits
        raise DataError(f"unusable JSON: {e.__class__.__name__}", path=path) from e
    return HFTokenizer(json_text=text, path=str(path))


def get_tokenizer(name_or_config: str | dict[str, Any] | Tokenizer) -> Tokenizer:
    """Builds a tokenizer from a name ("kim", "kim_sst", "whitespace", "regex", "char") or a config dict with a
    "type" key, as written by `Tokenizer.to_config()`. A Tokenizer passes through unchanged."""
    if isinstance(name_or_config, Tokenizer):
        return name_or_config
    config = {"type": name_or_config} if isinstance(name_or_config, str) else dict(name_or_config)
    kind = config.get("type")
    if kind not in _KEYS:
        raise ConfigError(f"--tokenizer: unknown tokenizer {kind!r}; choose one of {', '.join(sorted(_KEYS))} "
                          "or {'type': 'hf', 'path': 'tokenizer.json'}")
    unknown = set(config) - _KEYS[kind] - {"type"}
    if unknown:
        raise ConfigError(f"--tokenizer: tokenizer {kind!r} has no option(s) {', '.join(sorted(unknown))}")
    return _hf_from_config(config) if kind == "hf" else _SIMPLE[kind](config)
