"""Vocabulary: token strings to integer ids, built from training data only and saved as JSON.

Reserved ids: 0 is padding ("<pad>"), 1 is the unknown word ("<unk>"); with `bos_eos=True`, 2 and 3 are the
sentence start and end markers ("<s>", "</s>"). Regular tokens follow, ordered by training frequency (most
frequent first), ties broken by first occurrence in the training data, so the same data always gives the same ids.
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jaxcnn.data.readers import read_json
from jaxcnn.errors import ConfigError, DataError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
_FORMAT = "jaxcnn.vocabulary"
_VERSION = 1


class Vocabulary:
    """An immutable token <-> id mapping with reserved padding and unknown ids.

    Attributes:
      itos: token string of each id; `itos[0] == "<pad>"`, `itos[1] == "<unk>"`.
      bos_eos: whether ids 2 and 3 are the "<s>" / "</s>" markers.
      pad_id, unk_id: 0 and 1.
      bos_id, eos_id: 2 and 3 when `bos_eos`, else None.
    """

    pad_id = 0
    unk_id = 1

    def __init__(self, itos: Sequence[str], bos_eos: bool = False):
        specials = self.specials_for(bos_eos)
        if tuple(itos[: len(specials)]) != specials:
            raise ValueError(f"a vocabulary must start with {specials}, got {tuple(itos[:len(specials)])}")
        self.itos: list[str] = list(itos)
        self.bos_eos = bos_eos
        self.bos_id = 2 if bos_eos else None
        self.eos_id = 3 if bos_eos else None
        # Reserved strings stay out of the lookup table: a literal "<pad>" in a text must not become padding.
        self._stoi = {tok: i for i, tok in enumerate(self.itos) if i >= len(specials)}
        if len(self._stoi) != len(self.itos) - len(specials):
            raise ValueError("a vocabulary may not hold the same token twice")

    @staticmethod
    def specials_for(bos_eos: bool) -> tuple[str, ...]:
        return (PAD, UNK, BOS, EOS) if bos_eos else (PAD, UNK)

    @property
    def num_special(self) -> int:
        return 4 if self.bos_eos else 2

    @classmethod
    def build(cls, token_lists: Iterable[list[str]], min_freq: int = 1, max_size: int | None = None,
              bos_eos: bool = False) -> Vocabulary:
        """Counts tokens and keeps those seen at least `min_freq` times, the `max_size` most frequent at most.

        `max_size` counts regular tokens only (not the reserved ones). Order: frequency descending, then first
        occurrence in `token_lists`.
        """
        if min_freq < 1:
            raise ConfigError(f"--min-freq: must be at least 1, got {min_freq}")
        if max_size is not None and max_size < 0:
            raise ConfigError(f"--max-vocab: must be >= 0, got {max_size}")
        counts: collections.Counter[str] = collections.Counter()
        for tokens in token_lists:
            counts.update(tokens)
        specials = cls.specials_for(bos_eos)
        for s in specials:
            counts.pop(s, None)
        # Counter keeps first-insertion order and sorted() is stable, so ties stay in first-occurrence order.
        kept = [tok for tok, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n >= min_freq]
        if max_size is not None:
            kept = kept[:max_size]
        return cls(list(specials) + kept, bos_eos=bos_eos)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos and self.bos_eos == other.bos_eos

    def __hash__(self) -> int:
        return hash((tuple(self.itos), self.bos_eos))

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids, bos_eos={self.bos_eos})"

    @property
    def stoi(self) -> Mapping[str, int]:
        """Read-only token -> id map of the regular (non-reserved) tokens."""
        return types.MappingProxyType(self._stoi)

    def get(self, token: str) -> int:
        """The id of one token; unknown (and reserved) strings give `unk_id`."""
        return self._stoi.get(token, self.unk_id)

    def lookup(self, tokens: Iterable[str]) -> list[int]:
        """Ids of tokens; unknown tokens give `unk_id`."""
        get, unk = self._stoi.get, self.unk_id
        return [get(t, unk) for t in tokens]

    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "version": _VERSION, "bos_eos": self.bos_eos, "itos": self.itos}

    @classmethod
    def from_dict(cls, d: Any, path: str | os.PathLike | None = None) -> Vocabulary:
        """Rebuilds a vocabulary from `to_dict()` output; problems raise DataError naming `path`."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise DataError(f"not a jaxcnn vocabulary (expected a JSON object with \"format\": \"{_FORMAT}\")",
                            path=path)
        if d.get("version") != _VERSION:
            raise DataError(f"vocabulary format version {d.get('version')!r} is not supported (expected {_VERSION})",
                            path=path)
        itos, bos_eos = d.get("itos"), d.get("bos_eos", False)
        if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos) or not isinstance(bos_eos, bool):
            raise DataError("vocabulary \"itos\" must be a list of strings and \"bos_eos\" a boolean", path=path)
        try:
            return cls(itos, bos_eos=bos_eos)
        except ValueError as e:
            raise DataError(f"bad vocabulary: {e}", path=path) from e

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary as UTF-8 JSON, one token per line for readable diffs."""
        head = {k: v for k, v in self.to_dict().items() if k != "itos"}
        body = ",\n".join(json.dumps(t, ensure_ascii=False) for t in self.itos)
        text = json.dumps(head, ensure_ascii=False)[:-1] + ', "itos": [\n' + body + "\n]}\n"
        pathlib.Path(path).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Reads a vocabulary written by `save`; a missing or malformed file raises DataError naming it."""
        if not pathlib.Path(path).exists():
            raise DataError("vocabulary file not found", path=path)
        return cls.from_dict(read_json(path, what="vocabulary"), path=path)
