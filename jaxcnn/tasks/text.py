"""Sentence classification: Kim's CNN (`TextCNN`), or your own Flax module, on the text pipeline.

`TextTask()` is Kim (2014): a registry set or your own files, Kim's tokenizer and padding, a vocabulary fitted on
the training rows, pretrained vectors for the non-rand variants, and `TextCNN`. `TextTask(model=factory)` keeps
everything but the model: `factory(cfg, data)` returns any Linen module called as
`module(ids, *, train)` (`ids` <int32>[batch, length], 0 = padding) that returns <float32>[batch, classes] logits
and draws dropout from the "dropout" rng stream (`nn.Dropout`). See examples/custom_model.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import data as data_lib
from jaxcnn.configs import Config
from jaxcnn.data.readers import shorten
from jaxcnn.errors import ConfigError
from jaxcnn.models.text_cnn import TextCNN, fold_embeddings, folded_size, trainable_mask
from jaxcnn.tasks.api import Examples, Forward, PyTree
from jaxcnn.tasks.base import BuiltinOrOwnModel, linen_forward

SPLITS = ("train", "dev", "test")
LENGTH_BUCKET = 8
# Largest `fold_embeddings` table inference builds (4x the embedding for Kim's bank); above it, the plain path.
FOLD_LIMIT_BYTES = 1 << 30


@dataclasses.dataclass
class TextData:
    """Encoded examples and what prediction needs to encode new text the same way.

    Attributes:
      encoder: tokenizer + vocabulary + fixed length. label_names: class names, index = label id.
      arrays: {"ids": <int32>[rows, length], "label": <int32>[rows]}, every example once ({} once restored).
      tables: {seed: <float32>[vocab, dim]} pretrained tables (unknown words drawn per seed), or None for rand.
      vectors_report: the vector file's coverage. cut: <bool>[rows] sentences cut to the fixed length.
      empty: <bool>[rows] sentences without a token (a label alone, as CR and MPQA have; they encode to padding).
      embed_dim: the pretrained tables' width (None: the config's `embed_dim`).
      source: where the examples were found (`Examples.source`).
    """

    encoder: data_lib.TextEncoder
    label_names: list[str]
    arrays: dict[str, np.ndarray]
    tables: dict[int, np.ndarray] | None = None
    vectors_report: Any = None
    cut: np.ndarray | None = None
    embed_dim: int | None = None
    empty: np.ndarray | None = None
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def vocab(self) -> data_lib.Vocabulary:
        return self.encoder.vocab

    def pretrained(self, seed: int) -> np.ndarray | None:
        return None if self.tables is None else self.tables[seed]

    def meta(self) -> dict[str, Any]:
        return {"encoder": self.encoder.to_config(), "vocab": self.encoder.vocab.to_dict(),
                "label_names": list(self.label_names), "embed_dim": self.embed_dim}

    def describe(self, rows: Mapping[str, np.ndarray]) -> str:
        def count(flags: np.ndarray | None) -> dict[str, int]:
            return {} if flags is None else {s: int(flags[r].sum()) for s, r in rows.items()}

        return (f"{self.source} | vocab {len(self.encoder.vocab)} | length {self.encoder.length} | truncated "
                f"{count(self.cut)} | empty {count(self.empty)}")

    def summary(self) -> dict[str, Any]:
        return {"vocab_size": len(self.encoder.vocab),
                "vectors": None if self.vectors_report is None else str(self.vectors_report)}


class TextTask(BuiltinOrOwnModel):
    """Text classification (see the module docstring).

    Attributes:
      name: "text" for Kim's CNN; your own name with your own model (saved with its checkpoints, so that
        `jaxcnn.load(workdir, task=...)` can tell a workdir of another model).
      input_name: "text", the raw input's key in prediction records.
    """

    input_name = "text"
    default_name = "text"

    # -- data ----------------------------------------------------------------------------------------------------
    def load(self, cfg: Config) -> Examples:
        d = cfg.data
        if d.train_file is not None:
            dsd = data_lib.load_files(d.train_file, d.dev_file, d.test_file, fmt=d.format,
                                      text_column=d.text_column, label_column=d.label_column)
            protocol = "official" if "test" in dsd and "dev" in dsd else ("train_test" if "test" in dsd else "cv")
            source = str(d.train_file)
        else:
            if d.dataset not in data_lib.DATASETS:
                raise ConfigError(f"--dataset: unknown dataset {shorten(d.dataset)} "
                                  f"(choices: {', '.join(data_lib.DATASETS)})")
            phrases = data_lib.default_phrases(d.dataset, d.phrases)
            dsd, where = data_lib.locate(d.dataset, d.data_dir, phrases=phrases, fine_labels=d.fine_labels)
            protocol, source = data_lib.DATASETS[d.dataset].protocol, f"{d.dataset} from {where}"
        texts, labels, splits, start = [], [], {}, 0
        for s in (s for s in SPLITS if s in dsd):
            part = dsd[s][:]
            texts += part["text"]
            labels.append(np.asarray(part["label"], np.int32))
            splits[s] = np.arange(start, start + len(part["text"]))
            start += len(part["text"])
        names = list(dsd[next(iter(splits))].features["label"].names)
        return Examples(texts, np.concatenate(labels), names, splits, protocol, source)

    def tokenizer(self, cfg: Config) -> str:
        d = cfg.data
        if d.tokenizer is not None:
            return d.tokenizer
        return "kim" if d.train_file is not None else data_lib.DATASETS[d.dataset].tokenizer

    def prepare(self, cfg: Config, examples: Examples, splits: Sequence[Mapping[str, np.ndarray]],
                seeds: Sequence[int]) -> TextData:
        """The vocabulary is fitted on the union of the members' training rows (Kim's 10-fold CV: the whole set,
        as his `process_data.py`; one member: its training split) and every example is encoded."""
        d, m = cfg.data, cfg.model
        train = np.unique(np.concatenate([np.asarray(s["train"]) for s in splits]))
        texts = examples.inputs
        encoder = data_lib.TextEncoder.fit([texts[i] for i in train], self.tokenizer(cfg),
                                           pad_width=max(m.windows) - 1, cap=d.max_len, min_freq=d.min_freq,
                                           max_size=d.max_vocab)
        check_memory(len(texts), encoder.length, cfg)  # the length is fixed now: refuse before reading vectors
        tables = report = None
        if m.variant != "rand":
            trained = set(train.tolist())
            held_out = [r for r in dict.fromkeys(int(r) for s in splits for name in ("dev", "test") for r in s[name])
                        if r not in trained]
            tables, report, encoder = self._vectors(cfg, encoder, [texts[i] for i in held_out], seeds)
        enc = encoder.encode(texts)
        return TextData(encoder, list(examples.label_names), {"ids": enc.ids, "label": examples.labels}, tables,
                        report, enc.cut, None if tables is None else int(next(iter(tables.values())).shape[1]),
                        enc.empty, examples.source)

    def _vectors(self, cfg: Config, encoder: data_lib.TextEncoder, held_out: list[str], seeds: Sequence[int]):
        """({seed: table}, report, encoder) for a pretrained variant.

        With `extend_vocab`, held-out (dev, test) words that have a pretrained vector join the vocabulary after the
        training words, whose ids do not change: their rows are their pretrained vectors, as in Kim's code, which
        built one vocabulary over all of a dataset's sentences. Only text is read, never a held-out label;
        without this a static model would see every word it did not meet in training as <unk>.
        """
        m = cfg.model
        vocab = encoder.vocab
        if cfg.data.extend_vocab:
            seen, extra = set(vocab.itos), []
            for tokens in encoder.tokenizer.batch(held_out):
                for t in tokens:
                    if t not in seen:
                        seen.add(t)
                        extra.append(t)
            vocab = data_lib.Vocabulary(vocab.itos + extra, bos_eos=vocab.bos_eos)
        tables, report = {}, None
        for seed in dict.fromkeys(seeds):
            table, report = data_lib.load_word_vectors(m.embeddings, vocab, fmt=m.embeddings_format,
                                                       unknown_init=m.unknown_init, scale=m.unknown_scale, seed=seed)
            same = next((t for t in tables.values() if np.array_equal(t, table)), None)
            tables[seed] = table if same is None else same
        if len(vocab) > len(encoder.vocab):
            keep = (np.arange(len(vocab)) < len(encoder.vocab)) | report.found_mask
            vocab = data_lib.Vocabulary([w for w, k in zip(vocab.itos, keep) if k], bos_eos=vocab.bos_eos)
            kept = {}
            tables = {s: kept.setdefault(id(t), t[keep]) for s, t in tables.items()}
            report = dataclasses.replace(report, found=int(report.found_mask[keep].sum()),
                                         total=len(vocab) - vocab.num_special, found_mask=report.found_mask[keep])
            encoder = dataclasses.replace(encoder, vocab=vocab)
        return tables, report, encoder

    def restore(self, cfg: Config, meta: Mapping[str, Any]) -> TextData:
        vocab = data_lib.Vocabulary.from_dict(meta["vocab"])
        encoder = data_lib.TextEncoder.from_config(meta["encoder"], vocab)
        return TextData(encoder, list(meta["label_names"]), {}, embed_dim=meta.get("embed_dim"))

    # -- model ---------------------------------------------------------------------------------------------------
    def model(self, cfg: Config, data: TextData, dropout: Any = None) -> nn.Module:
        """The Linen module: Kim's `TextCNN` built from the config, or the factory's."""
        if self.own_model:
            return self.factory_model(cfg, data, dropout)
        m = cfg.model
        return TextCNN(vocab_size=len(data.encoder.vocab), num_classes=data.num_classes, variant=m.variant,
                       embed_dim=data.embed_dim or m.embed_dim, windows=tuple(m.windows), maps=m.maps,
                       activation=m.activation, conv_init=m.conv_init, pooling=m.pooling, k=m.k,
                       dropout=m.dropout if dropout is None else dropout, dropout_scaling=m.dropout_scaling,
                       hidden=tuple(m.hidden), norm=m.norm,
                       dtype=None if m.precision == "float32" else jnp.dtype(m.precision))

    def init(self, cfg: Config, data: TextData, key: jax.Array, pretrained: jax.Array | None
             ) -> tuple[PyTree, PyTree]:
        """Initial variables; a pretrained table (row 0, padding, forced to zero) replaces the random `embed` and
        `embed_static` tables."""
        variables = self.model(cfg, data).init(key, jnp.zeros((1, data.encoder.length), jnp.int32), train=False)
        params = dict(variables["params"])
        if pretrained is not None:
            table = jnp.asarray(pretrained, jnp.float32).at[0].set(0.0)
            for name in ("embed", "embed_static"):
                if name in params:
                    params[name] = {"embedding": jnp.array(table, copy=True)}  # distinct buffers: donated
        return params, {k: v for k, v in variables.items() if k != "params"}

    def forward(self, cfg: Config, data: TextData, *, dropout: Any = None) -> Forward:
        model = self.model(cfg, data, dropout)
        return linen_forward(model, "ids") if self.own_model else kim_forward(model)

    def trainable(self, cfg: Config, params: PyTree) -> PyTree:
        return trainable_mask(params)

    def embedding_tables(self, cfg: Config, params: PyTree) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if self.own_model:  # another model may use a table otherwise than by `take` of batch["ids"]
            return (), ()
        return tuple(n for n in ("embed",) if n in params), tuple(n for n in ("embed_static",) if n in params)

    def inference_aux(self, cfg: Config, params: PyTree) -> jax.Array | None:
        """Kim's CNN: the embedding folded into the conv taps (`fold_embeddings`), where the table fits."""
        if self.own_model:
            return None
        m = cfg.model
        vocab = next(params[k]["embedding"].shape[-2] for k in ("embed", "embed_static") if k in params)
        if folded_size(vocab, m.windows, m.maps) > FOLD_LIMIT_BYTES:
            return None
        return fold_embeddings(params, tuple(m.windows))

    # -- prediction ----------------------------------------------------------------------------------------------
    # Kim's CNN: texts are sorted by length and each batch is cut to its longest sentence plus Kim's padding,
    # rounded up to a multiple of LENGTH_BUCKET: the same outputs as at the full length (windows over padding
    # alone are masked out of the pooling), a fraction of the work, at most length / LENGTH_BUCKET shapes.
    def batches(self, cfg: Config, data: TextData, inputs: Sequence[str], batch_size: int
                ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        enc = data.encoder.encode(list(inputs))
        trim = not self.own_model
        order = np.argsort(enc.lengths, kind="stable") if trim else np.arange(len(enc.ids))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            length = row_length(cfg, data, int(enc.lengths[rows].max())) if trim else data.encoder.length
            batch = np.zeros((batch_size, length), np.int32)
            batch[: len(rows)] = enc.ids[rows, :length]
            yield rows, {"ids": batch}


    def read_labelled(self, cfg: Config, data: TextData, path: str, fmt: str | None
                      ) -> tuple[list[str], np.ndarray, list[str]]:
        d = cfg.data
        ds = data_lib.load_files(path, fmt=fmt or d.format, text_column=d.text_column,
                                 label_column=d.label_column)["train"]
        rows = ds[:]
        return rows["text"], np.asarray(rows["label"], np.int64), list(ds.features["label"].names)


def row_length(cfg: Config, data: TextData, longest: int) -> int:
    """The row length a batch of Kim's CNN needs for sentences of at most `longest` ids: Kim's padding on both
    sides, at least one window (k for k-max), rounded up to a few lengths so that compilations stay few. Trailing
    padding changes no logit (masked pooling), so prediction and explanation cut rows to it."""
    m, encoder = cfg.model, data.encoder
    shortest = max(m.windows) + (m.k - 1 if m.pooling == "kmax" else 0)
    need = max(longest + 2 * encoder.pad_width, shortest)
    return min(-(-need // LENGTH_BUCKET) * LENGTH_BUCKET, encoder.length)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(rows: int, length: int, cfg: Config) -> None:
    """Refuses, before allocating, an encoding whose id rows or one step's activations would not fit in memory:
    a one-line error that says what it would need (XLA's own message is a traceback from deep inside)."""
    m, t = cfg.model, cfg.train
    ids = 4 * rows * length
    # One step: the embedded batch, every width's feature maps, and their gradients (a rough upper bound).
    step = 4 * 3 * t.batch_size * length * (m.embed_dim + m.maps * len(m.windows))
    available = available_memory()
    if available is not None and ids + step > available:
        raise ConfigError(f"--max-len: {rows} sentences of {length} ids need about {_bytes(ids + step)}, more than "
                          f"the {_bytes(available)} available; give a smaller --max-len (or --batch-size)")


def _bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def kim_forward(model: TextCNN) -> Forward:
    """Kim's CNN as the engine calls it; dropout draws one key per example, `fold_in(step key, batch["index"])`,
    so a step is the same on any number of devices and in any batch layout."""

    def forward(variables, batch, *, train, rng, mutable, aux=None):
        keys = None
        if train:
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, batch["index"])
        return model.apply(variables, batch["ids"], train=train, dropout_keys=keys, mutable=mutable, folded=aux)

    return forward
