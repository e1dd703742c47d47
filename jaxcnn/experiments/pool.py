"""One encoded pool of examples for many members, and each member's train/dev/test rows into it.

Every example of the dataset (all given splits, concatenated train, dev, test) is encoded once; a member is a set
of row indices. The rows follow `jaxcnn.data.resolve_protocol` exactly (same folds, same dev carving, same order),
so a member's splits hold the same sentences as `jaxcnn train` would use with the split seed and fold.

Vocabulary: fitted on the union of the members' training rows. For 10-fold CV that union is the whole dataset,
which is what Kim (2014) did (`process_data.py` builds one vocabulary over all sentences); words seen only in a
fold's test part then get trained-never random vectors instead of `<unk>`. For one member the union is its own
train split, so the result is `jaxcnn train`'s vocabulary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxcnn import data as data_lib
from jaxcnn.configs import Config
from jaxcnn.data import splits as splits_lib
from jaxcnn.errors import ConfigError
from jaxcnn.tasks.text import TextData

SPLITS = ("train", "dev", "test")


@dataclasses.dataclass
class Source:
    """A dataset before any protocol: all its examples and where each given split sits in the pool.

    Attributes:
      texts: every example's text, splits concatenated in train, dev, test order. labels: <int32>[n].
      label_names: class names. ranges: {split: <int64>[rows]} the pool rows of each given split.
      protocol: "cv", "official" or "train_test". tokenizer: the tokenizer name.
    """

    texts: list[str]
    labels: np.ndarray
    label_names: list[str]
    ranges: dict[str, np.ndarray]
    protocol: str
    tokenizer: str


def load_source(cfg: Config) -> Source:
    """Loads the config's dataset (registry name or own files) as one pool, as `tasks.text.load_splits` does
    before it applies the protocol."""
    d = cfg.data
    if d.task != "text":
        raise ConfigError(f"--task: multi-member experiments support the text task, not {d.task!r}")
    if d.train_file is not None:
        dsd = data_lib.load_files(d.train_file, d.dev_file, d.test_file, fmt=d.format, text_column=d.text_column,
                                  label_column=d.label_column)
        protocol = "official" if "test" in dsd and "dev" in dsd else ("train_test" if "test" in dsd else "cv")
        tokenizer = "kim"
    else:
        if d.dataset not in data_lib.DATASETS:
            raise ConfigError(f"--dataset: unknown dataset {d.dataset!r} (choices: {', '.join(data_lib.DATASETS)})")
        spec = data_lib.DATASETS[d.dataset]
        phrases = d.phrases if d.phrases is not None else d.dataset in ("sst1", "sst2")
        dsd = data_lib.load_splits(d.dataset, d.data_dir, phrases=phrases, fine_labels=d.fine_labels)
        protocol, tokenizer = spec.protocol, spec.tokenizer
    present = [s for s in SPLITS if s in dsd]
    texts, labels, ranges, start = [], [], {}, 0
    for s in present:
        rows = dsd[s][:]
        texts += rows["text"]
        labels.append(np.asarray(rows["label"], np.int32))
        ranges[s] = np.arange(start, start + len(rows["text"]))
        start += len(rows["text"])
    return Source(texts, np.concatenate(labels), list(dsd[present[0]].features["label"].names), ranges, protocol,
                  d.tokenizer or tokenizer)


def split_rows(source: Source, cfg: Config, *, fold: int | None = None) -> dict[str, np.ndarray]:
    """{"train", "dev", "test": <int32>[n] pool rows} under the dataset's protocol, seeded by `cfg.train.seed`
    (the split seed) and `fold` (default `cfg.data.fold`), mirroring `jaxcnn.data.resolve_protocol`."""
    d, seed = cfg.data, cfg.train.seed
    fold = d.fold if fold is None else fold
    r = source.ranges

    def labels(rows: np.ndarray) -> np.ndarray | None:
        return source.labels[rows] if d.stratify else None

    if source.protocol == "official":
        if list(r) != list(SPLITS):
            raise ConfigError(f"--protocol official: needs train, dev and test splits, found {', '.join(r)}")
        out = dict(r)
    elif source.protocol == "train_test":
        if list(r) != ["train", "test"]:
            raise ConfigError(f"--protocol train_test: needs exactly train and test splits, found {', '.join(r)}")
        train_pos, dev_pos = splits_lib.dev_split(len(r["train"]), d.dev_fraction, seed, labels(r["train"]))
        out = {"train": r["train"][train_pos], "dev": r["train"][dev_pos], "test": r["test"]}
    else:
        if not 0 <= fold < d.folds:
            raise ConfigError(f"--fold: must be in 0..{d.folds - 1}, got {fold}")
        n = len(source.texts)
        test = splits_lib.kfold_indices(n, d.folds, seed, labels(np.arange(n)))[fold]
        rest = np.setdiff1d(np.arange(n), test)
        train_pos, dev_pos = splits_lib.dev_split(len(rest), d.dev_fraction, [seed, fold], labels(rest))
        out = {"train": rest[train_pos], "dev": rest[dev_pos], "test": test}
    return {k: np.asarray(v, np.int32) for k, v in out.items()}


@dataclasses.dataclass
class Pool:
    """The encoded pool and each seed's pretrained table.

    Attributes:
      data: `TextData` whose `splits["pool"]` = {"ids": <int32>[n, length], "label": <int32>[n]}; its encoder,
        labels and (first seed's) embeddings are what checkpoints and prediction need.
      tables: {seed: <float32>[vocab, dim]} (unknown words are drawn per seed, as in `jaxcnn train`), or None
        for CNN-rand. Seeds with equal tables share one array.
      source: the raw examples.
    """

    data: TextData
    tables: dict[int, np.ndarray] | None
    source: Source

    def member_data(self, train: np.ndarray, dev: np.ndarray, test: np.ndarray, seed: int) -> TextData:
        """The `TextData` on which `jaxcnn.train.trainer.Run` trains this member alone (the same arrays)."""
        pool = self.data.splits["pool"]
        splits = {name: {k: v[rows] for k, v in pool.items()} for name, rows in
                  (("train", train), ("dev", dev), ("test", test))}
        table = None if self.tables is None else self.tables[seed]
        return dataclasses.replace(self.data, splits=splits, embeddings=table)


def build_pool(cfg: Config, source: Source, train_rows: Sequence[np.ndarray], seeds: Sequence[int]) -> Pool:
    """Encodes every example with a vocabulary fitted on the union of `train_rows` and loads each seed's table."""
    union = np.unique(np.concatenate([np.asarray(r) for r in train_rows]))
    tokenizer = data_lib.get_tokenizer(source.tokenizer)
    encoder = data_lib.TextEncoder.fit([source.texts[i] for i in union], tokenizer,
                                       pad_width=max(cfg.model.windows) - 1, cap=cfg.data.max_len,
                                       min_freq=cfg.data.min_freq, max_size=cfg.data.max_vocab)
    enc = encoder.encode(source.texts)
    tables = report = None
    if cfg.model.variant != "rand":
        tables = {}
        m = cfg.model
        for seed in dict.fromkeys(seeds):
            table, report = data_lib.load_word_vectors(m.embeddings, encoder.vocab, fmt=m.embeddings_format,
                                                       unknown_init=m.unknown_init, scale=m.unknown_scale, seed=seed)
            same = next((t for t in tables.values() if np.array_equal(t, table)), None)
            tables[seed] = table if same is None else same
    first = None if tables is None else tables[seeds[0]]
    data = TextData(encoder, source.label_names, {"pool": {"ids": enc.ids, "label": source.labels}}, first, report,
                    {"pool": enc.truncated})
    return Pool(data, tables, source)


def bootstrap(rows: np.ndarray, seed: int) -> np.ndarray:
    """A resample of `rows` of the same size, with replacement, sorted (the member's data order then depends on
    its seed alone, as for any member)."""
    rng = np.random.default_rng([seed, 7919])
    return np.sort(rng.choice(rows, size=len(rows), replace=True)).astype(np.int32)
