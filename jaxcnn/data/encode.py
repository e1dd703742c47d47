"""Text to fixed-length id arrays, with Kim's zero padding on both sides.

Row layout (Kim 2014, `process_data.get_idx_from_sent`), for `pad_width = widest filter - 1`:

    [pad] * pad_width + ids of the first max_len tokens + [pad] * (max_len - n + pad_width)

so every row has `length = max_len + 2 * pad_width` ids, an empty or short sentence still fills the widest filter,
and padding (id 0) appears only outside the sentence. With a BOS/EOS vocabulary, "<s>" and "</s>" wrap the
sentence and count towards `max_len`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxcnn.data.tokenize import Tokenizer, get_tokenizer
from jaxcnn.data.vocab import Vocabulary
from jaxcnn.errors import ConfigError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

# The row length when no --max-len is given is the longest training sentence, up to this: one runaway line (a
# document, a file with no line breaks) must not set the length of every row (500,000 tokens asked XLA for 430 GB).
# Kim's sets stay far below it (the longest sentence: 56 tokens, MR).
DEFAULT_MAX_LEN = 1000


@dataclasses.dataclass(frozen=True, eq=False)
class Encoded:
    """Encoded sentences.

    Attributes:
      ids: <int32>[n, length] token ids, 0 outside the sentence.
      lengths: <int32>[n] number of sentence ids kept (BOS/EOS included).
      truncated: how many sentences lost tokens to `max_len`.
      mask: <bool>[n, length] True on sentence positions.
      cut: <bool>[n] which sentences lost tokens.
      empty: <bool>[n] which sentences have no token at all (a label alone, or text the tokenizer drops).
    """

    ids: np.ndarray
    lengths: np.ndarray
    truncated: int
    mask: np.ndarray
    cut: np.ndarray | None = None
    empty: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class TextEncoder:
    """Tokenizer + vocabulary + fixed length: everything prediction needs to turn text into model input.

    Attributes:
      tokenizer: the Tokenizer used at training time.
      vocab: the training Vocabulary.
      max_len: sentence ids kept per row (longer sentences are cut at the end and counted).
      pad_width: padding ids on each side (Kim: widest filter - 1 = 4).
    """

    tokenizer: Tokenizer
    vocab: Vocabulary
    max_len: int
    pad_width: int

    def __post_init__(self) -> None:
        if self.max_len < 1:
            raise ConfigError(f"--max-len: must be at least 1, got {self.max_len}")
        if self.pad_width < 0:
            raise ConfigError(f"pad_width: must be >= 0, got {self.pad_width} (the widest filter - 1)")
        if self.vocab.bos_eos and self.max_len < 2:
            raise ConfigError(f"--max-len: must be at least 2 with BOS/EOS markers, got {self.max_len}")

    @property
    def length(self) -> int:
        """Ids per row: `max_len + 2 * pad_width`."""
        return self.max_len + 2 * self.pad_width

    @classmethod
    def fit(cls, texts: Sequence[str], tokenizer: Tokenizer | str | dict[str, Any], pad_width: int,
            max_len: int | None = None, cap: int | None = None, min_freq: int = 1, max_size: int | None = None,
            bos_eos: bool = False) -> TextEncoder:
        """Builds the vocabulary from training `texts` and fixes the row length.

        `max_len` defaults to the longest training sentence (in ids, BOS/EOS included), lowered to `cap` if given,
        else to `DEFAULT_MAX_LEN` (with a warning naming how many training sentences that cuts).
        """
        tok = get_tokenizer(tokenizer)
        token_lists = tok.batch(texts)
        vocab = Vocabulary.build(token_lists, min_freq=min_freq, max_size=max_size, bos_eos=bos_eos)
        if max_len is None:
            extra = 2 if bos_eos else 0
            max_len = max((len(t) for t in token_lists), default=0) + extra
            max_len = max(max_len, 1)
        if cap is not None:
            if cap < 1:
                raise ConfigError(f"--max-len: must be at least 1, got {cap}")
            max_len = min(max_len, cap)
        elif max_len > DEFAULT_MAX_LEN:
            longer = sum(len(t) + (2 if bos_eos else 0) > DEFAULT_MAX_LEN for t in token_lists)
            log.warning("%d training sentences are longer than %d tokens (the longest: %d) and are cut there; "
                        "--max-len sets another length", longer, DEFAULT_MAX_LEN, max_len)
            max_len = DEFAULT_MAX_LEN
        return cls(tok, vocab, max_len=max_len, pad_width=pad_width)

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Encodes texts to fixed-length rows.

        Args:
          texts: n strings (any unicode; empty is fine).

        Returns:
          Encoded with ids <int32>[n, length], lengths <int32>[n], mask <bool>[n, length] and the truncation count.
        """
        return self.encode_tokens(self.tokenizer.batch(texts))

    def encode_tokens(self, token_lists: Sequence[list[str]]) -> Encoded:
        """Like `encode`, for already tokenized sentences."""
        n, length, vocab = len(token_lists), self.length, self.vocab
        get, unk = vocab.stoi.get, vocab.unk_id
        keep = self.max_len - (2 if vocab.bos_eos else 0)
        full = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=n)
        kept = np.minimum(full, keep)
        flat = np.fromiter(
            (get(t, unk) for toks in token_lists for t in itertools.islice(toks, keep)), dtype=np.int32,
            count=int(kept.sum()))
        if vocab.bos_eos:
            flat, kept = _wrap(flat, kept, vocab.bos_id, vocab.eos_id), kept + 2
        ids = np.zeros((n, length), dtype=np.int32)
        rows = np.repeat(np.arange(n), kept)
        starts = np.cumsum(kept) - kept
        cols = self.pad_width + np.arange(flat.size) - np.repeat(starts, kept)
        ids[rows, cols] = flat
        positions = np.arange(length) - self.pad_width
        mask = (positions[None, :] >= 0) & (positions[None, :] < kept[:, None])
        cut = full > keep
        return Encoded(ids=ids, lengths=kept.astype(np.int32), truncated=int(cut.sum()), mask=mask, cut=cut,
                       empty=full == 0)

    def to_config(self, include_vocab: bool = False) -> dict[str, Any]:
        """JSON-able description; the vocabulary is saved separately unless `include_vocab`."""
        config: dict[str, Any] = {"tokenizer": self.tokenizer.to_config(), "max_len": self.max_len,
                                  "pad_width": self.pad_width}
        if include_vocab:
            config["vocab"] = self.vocab.to_dict()
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], vocab: Vocabulary | None = None) -> TextEncoder:
        """Rebuilds an encoder from `to_config()`; `vocab` is required unless the config includes it."""
        try:
            if vocab is None:
                if "vocab" not in config:
                    raise ConfigError("encoder config has no vocabulary; pass vocab=Vocabulary.load(...)")
                vocab = Vocabulary.from_dict(config["vocab"])
            return cls(get_tokenizer(config["tokenizer"]), vocab, max_len=int(config["max_len"]),
                       pad_width=int(config["pad_width"]))
        except KeyError as e:
            raise ConfigError(f"encoder config lacks {e.args[0]!r}") from e


def _wrap(flat: np.ndarray, kept: np.ndarray, bos: int, eos: int) -> np.ndarray:
    """Puts `bos` before and `eos` after each sentence of a flat id array (sentence i has kept[i] ids)."""
    out = np.empty(flat.size + 2 * len(kept), dtype=flat.dtype)
    starts = np.cumsum(kept + 2) - (kept + 2)
    ends = starts + kept + 1
    out[starts], out[ends] = bos, eos
    body = np.ones(out.size, dtype=bool)
    body[starts] = body[ends] = False
    out[body] = flat
    return out


def encode_dataset(ds: datasets.Dataset, encoder: TextEncoder) -> dict[str, np.ndarray]:
    """Encodes a `text`/`label` Dataset in one pass.

    Returns:
      dict with ids <int32>[n, length], labels <int32>[n], lengths <int32>[n]. The number of truncated sentences is
      logged; call `encoder.encode` directly to get it as a value.
    """
    batch = ds[:]  # one Arrow-to-Python conversion; honours any select()/shuffle() index mapping
    enc = encoder.encode(batch["text"])
    if enc.truncated:
        log.info("%d of %d sentences were longer than max_len=%d and were cut", enc.truncated, len(ds),
                 encoder.max_len)
    return {"ids": enc.ids, "labels": np.asarray(batch["label"], dtype=np.int32), "lengths": enc.lengths}
