"""The text classification task: from a `Config` to encoded splits, a `TextCNN` and its initial parameters."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import data as data_lib
from jaxcnn.configs import Config
from jaxcnn.data.readers import shorten
from jaxcnn.errors import ConfigError
from jaxcnn.models.text_cnn import TextCNN, trainable_mask


@dataclasses.dataclass
class TextData:
    """Encoded splits and what prediction needs to encode new text the same way.

    Attributes:
      encoder: tokenizer + vocabulary + fixed length. label_names: class names, index = label id.
      splits: {"train"|"dev"|"test": {"ids": <int32>[n, length], "label": <int32>[n]}}.
      embeddings: <float32>[vocab, dim] pretrained table (None for rand). vectors_report: its coverage line.
      truncated: sentences cut to the fixed length, per split.
    """

    encoder: Any
    label_names: list[str]
    splits: dict[str, dict[str, np.ndarray]]
    embeddings: np.ndarray | None = None
    vectors_report: Any = None
    truncated: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def describe(self) -> str:
        """One log line about the data."""
        sizes = ", ".join(f"{k} {len(v['label'])}" for k, v in self.splits.items())
        return (f"data: {sizes} | vocab {len(self.encoder.vocab)} | length {self.encoder.length} | classes "
                f"{self.label_names} | truncated {self.truncated}")  # the vector loader logs its own coverage line

    def summary(self) -> dict[str, Any]:
        """Task-specific entries of summary.json."""
        return {"vocab_size": len(self.encoder.vocab),
                "vectors": None if self.vectors_report is None else str(self.vectors_report)}

    def meta(self) -> dict[str, Any]:
        """JSON that, with the config, rebuilds the encoder and model for prediction."""
        return {"task": "text", "encoder": self.encoder.to_config(), "vocab": self.encoder.vocab.to_dict(),
                "label_names": list(self.label_names),
                "embed_dim": None if self.embeddings is None else int(self.embeddings.shape[1])}


def load_splits(cfg: Config):
    """The run's train/dev/test `datasets.DatasetDict` and the protocol it followed."""
    d = cfg.data
    if d.train_file is not None:
        dsd = data_lib.load_files(d.train_file, d.dev_file, d.test_file, fmt=d.format,
                                  text_column=d.text_column, label_column=d.label_column)
        protocol = "official" if "test" in dsd and "dev" in dsd else ("train_test" if "test" in dsd else "cv")
        tokenizer = "kim"
    else:
        if d.dataset not in data_lib.DATASETS:
            raise ConfigError(f"--dataset: unknown dataset {shorten(d.dataset)} "
                              f"(choices: {', '.join(data_lib.DATASETS)})")
        spec = data_lib.DATASETS[d.dataset]
        phrases = d.phrases if d.phrases is not None else d.dataset in ("sst1", "sst2")
        dsd = data_lib.load_splits(d.dataset, d.data_dir, phrases=phrases, fine_labels=d.fine_labels)
        protocol = spec.protocol
        tokenizer = spec.tokenizer
    dsd = data_lib.resolve_protocol(dsd, protocol, fold=d.fold, folds=d.folds, seed=cfg.train.seed,
                                    dev_fraction=d.dev_fraction, stratify=d.stratify)
    return dsd, protocol, d.tokenizer or tokenizer


def prepare(cfg: Config) -> TextData:
    dsd, _, tokenizer_name = load_splits(cfg)
    tokenizer = data_lib.get_tokenizer(tokenizer_name)
    label_names = list(dsd["train"].features["label"].names)
    texts = {name: dsd[name][:]["text"] for name in ("train", "dev", "test")}
    encoder = data_lib.TextEncoder.fit(texts["train"], tokenizer, pad_width=max(cfg.model.windows) - 1,
                                       cap=cfg.data.max_len, min_freq=cfg.data.min_freq,
                                       max_size=cfg.data.max_vocab)
    embeddings = report = None
    if cfg.model.variant != "rand":
        embeddings, report, encoder = load_vectors(cfg, encoder, texts)
    splits, truncated = {}, {}
    for name in ("train", "dev", "test"):
        enc = encoder.encode(texts[name])
        splits[name] = {"ids": enc.ids, "label": np.asarray(dsd[name][:]["label"], np.int32)}
        truncated[name] = enc.truncated
    return TextData(encoder, label_names, splits, embeddings, report, truncated)


def load_vectors(cfg: Config, encoder, texts: dict[str, list[str]]):
    """(embedding matrix, report, encoder) for a pretrained variant.

    With `extend_vocab`, dev and test words that have a pretrained vector join the vocabulary (after the training
    words, whose ids do not change): their rows are their pretrained vectors, as in Kim's code, which built one
    vocabulary over all of a dataset's sentences. Only the text is read, never a dev or test label; without this a
    static model would see every word it did not meet in training as <unk>.
    """
    m = cfg.model
    vocab = encoder.vocab
    if cfg.data.extend_vocab:
        seen = set(vocab.itos)
        extra = []
        for name in ("dev", "test"):
            for tokens in encoder.tokenizer.batch(texts[name]):
                for t in tokens:
                    if t not in seen:
                        seen.add(t)
                        extra.append(t)
        vocab = data_lib.Vocabulary(vocab.itos + extra, bos_eos=vocab.bos_eos)
    matrix, report = data_lib.load_word_vectors(m.embeddings, vocab, fmt=m.embeddings_format,
                                                unknown_init=m.unknown_init, scale=m.unknown_scale,
                                                seed=cfg.train.seed)
    if len(vocab) > len(encoder.vocab):
        keep = np.arange(len(vocab)) < len(encoder.vocab)
        keep |= report.found_mask
        vocab = data_lib.Vocabulary([w for w, k in zip(vocab.itos, keep) if k], bos_eos=vocab.bos_eos)
        matrix = matrix[keep]
        report = dataclasses.replace(report, found=int(report.found_mask[keep].sum()),
                                     total=len(vocab) - vocab.num_special, found_mask=report.found_mask[keep])
        encoder = dataclasses.replace(encoder, vocab=vocab)
    return matrix, report, encoder


def build(cfg: Config, data: TextData, key: jax.Array):
    """(forward, params, model_state, trainable mask) of a fresh model for `data`."""
    embed_dim = None if data.embeddings is None else data.embeddings.shape[1]
    model = build_model(cfg, len(data.encoder.vocab), data.num_classes, embed_dim)
    params, model_state = init_variables(model, key, data.encoder.length, data.embeddings)
    return make_forward(model), params, model_state, trainable_mask(params)


def embedding_tables(params) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(trainable, frozen) top-level names of the embedding tables indexed by batch["ids"]."""
    return (tuple(n for n in ("embed",) if n in params), tuple(n for n in ("embed_static",) if n in params))


def build_model(cfg: Config, vocab_size: int, num_classes: int, embed_dim: int | None = None) -> TextCNN:
    m = cfg.model
    return TextCNN(vocab_size=vocab_size, num_classes=num_classes, variant=m.variant,
                   embed_dim=embed_dim or m.embed_dim, windows=tuple(m.windows), maps=m.maps,
                   activation=m.activation, conv_init=m.conv_init, pooling=m.pooling, k=m.k, dropout=m.dropout,
                   dropout_scaling=m.dropout_scaling, hidden=tuple(m.hidden), norm=m.norm)


def make_forward(model: TextCNN):
    """The model as the engine calls it: `forward(variables, batch, *, train, rng, mutable)`."""

    def forward(variables, batch, *, train, rng, mutable, folded=None):
        keys = None
        if train:
            keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, batch["index"])
        return model.apply(variables, batch["ids"], train=train, dropout_keys=keys, mutable=mutable, folded=folded)

    return forward


def init_variables(model: TextCNN, key: jax.Array, length: int, embeddings: np.ndarray | None = None):
    """Initial variables; a pretrained table (row 0, padding, forced to zero) replaces the random ones."""
    variables = model.init(key, jnp.zeros((1, length), jnp.int32), train=False)
    params = dict(variables["params"])
    if embeddings is not None:
        table = jnp.asarray(embeddings, jnp.float32).at[0].set(0.0)
        for name in ("embed", "embed_static"):
            if name in params:
                params[name] = {"embedding": jnp.array(table, copy=True)}  # distinct buffers: donated
    model_state = {k: v for k, v in variables.items() if k != "params"}
    return params, model_state
