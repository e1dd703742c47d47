"""The seven benchmark sets of Kim (2014), your own files, and Hub datasets, all as `datasets.DatasetDict`s with
a `text` (string) column and a `label` (ClassLabel) column.

Where data comes from (`load_splits`), in this order: the data folder (`--data-dir`, else $JAXCNN_DATA_DIR) when it
holds the set's files; the copies bundled with jaxcnn (MR and TREC only: `jaxcnn/data/bundled`, with their
provenance); the Hugging Face Hub. Files are looked up as `<data_dir>/<relative path>` (e.g.
`kim/rt-polarity.all`) and then (except the generically named `sst-trees/*.txt`) as `<data_dir>/<file name>`, so a
flat folder works too. Once a set has local files, a missing or broken one is an error; it never falls back
half-way. Without network (or with HF_HUB_OFFLINE set) a set found nowhere is a one-line error at once, naming the
files to put in a data folder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from jaxcnn.data import readers, splits, trees
from jaxcnn.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Protocol = Literal["cv", "official", "train_test", "holdout"]
SPLITS = ("train", "dev", "test")
_HUB_SPLITS = {"train": "train", "validation": "dev", "valid": "dev", "val": "dev", "dev": "dev", "test": "test"}
_FILE_SUFFIXES = {".txt", ".csv", ".tsv", ".jsonl", ".json", ".parquet", ".all", ".train", ".dev", ".test"}
_HUGE = 10**18
BUNDLED = pathlib.Path(__file__).resolve().parent / "bundled"
HUB_TIMEOUT_S = 1.5
# A Hub id is `name` or `owner/name`; each part starts with a letter or digit, so none is "." or "..".
_HUB_REF = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?\Z", re.ASCII)

TREC_COARSE = ("DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM")  # the order of kim/TREC.*.all's integer labels
TREC_FINE = (
    "ABBR:abb", "ABBR:exp", "DESC:def", "DESC:desc", "DESC:manner", "DESC:reason", "ENTY:animal", "ENTY:body",
    "ENTY:color", "ENTY:cremat", "ENTY:currency", "ENTY:dismed", "ENTY:event", "ENTY:food", "ENTY:instru",
    "ENTY:lang", "ENTY:letter", "ENTY:other", "ENTY:plant", "ENTY:product", "ENTY:religion", "ENTY:sport",
    "ENTY:substance", "ENTY:symbol", "ENTY:techmeth", "ENTY:termeq", "ENTY:veh", "ENTY:word", "HUM:desc", "HUM:gr",
    "HUM:ind", "HUM:title", "LOC:city", "LOC:country", "LOC:mount", "LOC:other", "LOC:state", "NUM:code",
    "NUM:count", "NUM:date", "NUM:dist", "NUM:money", "NUM:ord", "NUM:other", "NUM:perc", "NUM:period", "NUM:speed",
    "NUM:temp", "NUM:volsize", "NUM:weight",
)  # sorted; Hub fine labels are matched by name, so the Hub's own order does not matter
SST1_NAMES = ("very negative", "negative", "neutral", "positive", "very positive")
_POLARITY = ("negative", "positive")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One benchmark set.

    Attributes:
      name: registry key ("mr", "sst1", ...).
      title: human name.
      num_classes: number of classes (TREC: the 6 coarse ones).
      label_names: class names, in label-id order.
      protocol: "cv" (10-fold cross-validation), "official" (given train/dev/test) or "train_test" (given
        train/test, dev carved from train).
      local_files: (split, path under the data folder) of the Kim-format files.
      alt_files: other local sources that are read when the Kim-format files are absent.
      hub_id: Hugging Face Hub dataset id, used when nothing is local.
      hub_text_column, hub_label_column: its columns.
      hub_label_text_column: a column naming each label, matched to `label_names` when present.
      hub_label_aliases: (Hub label name, our label name) pairs where they differ.
      tokenizer: Kim's tokenizer for this set ("kim"; "kim_sst" for SST; "kim_cased" for TREC, which Kim did
        not lowercase).
      hub_notes: where the Hub copy differs from Kim's protocol.
    """

    name: str
    title: str
    num_classes: int
    label_names: tuple[str, ...]
    protocol: Protocol
    local_files: tuple[tuple[str, str], ...]
    alt_files: tuple[str, ...]
    hub_id: str
    hub_text_column: str
    hub_label_column: str
    hub_label_text_column: str | None
    hub_label_aliases: tuple[tuple[str, str], ...]
    tokenizer: str
    hub_notes: str


def _spec(name: str, title: str, names: Sequence[str], protocol: Protocol, files: Mapping[str, str], hub_id: str,
          notes: str, *, alt: Sequence[str] = (), text: str = "text", label_text: str | None = "label_text",
          aliases: Mapping[str, str] | None = None, tokenizer: str = "kim") -> DatasetSpec:
    return DatasetSpec(name=name, title=title, num_classes=len(names), label_names=tuple(names), protocol=protocol,
                       local_files=tuple(files.items()), alt_files=tuple(alt), hub_id=hub_id, hub_text_column=text,
                       hub_label_column="label", hub_label_text_column=label_text,
                       hub_label_aliases=tuple((aliases or {}).items()), tokenizer=tokenizer, hub_notes=notes)


DATASETS: dict[str, DatasetSpec] = {
    "mr": _spec(
        "mr", "MR (movie review polarity, Pang & Lee 2005)", _POLARITY, "cv", {"train": "kim/rt-polarity.all"},
        "cornell-movie-review-data/rotten_tomatoes",
        "fixed 8530/1066/1066 train/validation/test split; merged here into one 10662-sentence pool for Kim's "
        "10-fold CV (same sentences as rt-polarity)",
        alt=("raw/rt-polarity.neg", "raw/rt-polarity.pos"), label_text=None,
        aliases={"neg": "negative", "pos": "positive"}),
    "sst1": _spec(
        "sst1", "SST-1 (Stanford Sentiment Treebank, 5 classes)", SST1_NAMES, "official",
        {s: f"kim/stsa.fine.{s}" for s in SPLITS}, "SetFit/sst5",
        "sentences only (8544/1101/2210), same splits; no phrase-level training set (phrases=True needs "
        "sst-trees/train.txt)",
        alt=("sst-trees/train.txt", "sst-trees/dev.txt", "sst-trees/test.txt"), tokenizer="kim_sst"),
    "sst2": _spec(
        "sst2", "SST-2 (Stanford Sentiment Treebank, binary)", _POLARITY, "official",
        {s: f"kim/stsa.binary.{s}" for s in SPLITS}, "SetFit/sst2",
        "sentences only (6920/872/1821), same splits; no phrase-level training set (phrases=True needs "
        "sst-trees/train.txt). Not GLUE sst2, whose 67k training rows are phrases and whose test labels are hidden",
        alt=("sst-trees/train.txt", "sst-trees/dev.txt", "sst-trees/test.txt"), tokenizer="kim_sst"),
    "subj": _spec(
        "subj", "Subj (subjectivity, Pang & Lee 2004)", ("objective", "subjective"), "cv", {"train": "kim/subj.all"},
        "SetFit/subj",
        "SentEval's SUBJ as a fixed train/test split (about 8000/2000); merged here into one pool for 10-fold CV"),
    "trec": _spec(
        "trec", "TREC question type (Li & Roth 2002)", TREC_COARSE, "train_test",
        {"train": "kim/TREC.train.all", "test": "kim/TREC.test.all"}, "CogComp/trec",
        "same 5452/500 split; its coarse_label ids are ordered ABBR, ENTY, DESC, HUM, LOC, NUM and are remapped "
        "by name to Kim's order; fine labels (fine_labels=True) come from fine_label",
        alt=("raw/TREC.train", "raw/TREC.test"), label_text=None, tokenizer="kim_cased"),
    "cr": _spec(
        "cr", "CR (customer reviews, Hu & Liu 2004)", _POLARITY, "cv", {"train": "kim/custrev.all"},
        "SetFit/SentEval-CR",
        "a random 80/20 train/test split of SentEval's CR; merged here into one pool for 10-fold CV"),
    "mpqa": _spec(
        "mpqa", "MPQA (opinion polarity, Wiebe et al. 2005)", _POLARITY, "cv", {"train": "kim/mpqa.all"},
        "jxm/mpqa",
        "columns sentence/label with 8603/256/2000 train/dev/test rows (10859 in all, vs Kim's 10606); merged here "
        "into one pool for 10-fold CV; label ids are taken as 0=negative, 1=positive (not checked against the files)",
        text="sentence", label_text=None),
}


# ----------------------------------------------------------------------------------------------------------------
# Building DatasetDicts


def _features(names: Sequence[str]) -> Any:
    import datasets  # imported here: it takes about a second, and only the loaders need it

    return datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))})


def _dataset(texts: list[str], labels: list[int], names: Sequence[str]) -> Any:
    import datasets

    return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=_features(names))


def _dataset_dict(parts: Mapping[str, tuple[list[str], list[int]]], names: Sequence[str]) -> Any:
    import datasets

    return datasets.DatasetDict({s: _dataset(*parts[s], names) for s in SPLITS if s in parts})


class _LabelMap:
    """Turns raw labels (class ids, or class names) into ids 0..C-1 of `names`."""

    def __init__(self, names: Sequence[str], aliases: Mapping[str, str] | None = None):
        self.names = list(names)
        self._index = {n: i for i, n in enumerate(self.names)}
        self._aliases = dict(aliases or {})

    @classmethod
    def infer(cls, raw: Sequence[Any], where: Callable[[int], tuple[str, int]]) -> _LabelMap:
        """Class names from training labels: all integers -> "0".."max"; otherwise the sorted distinct strings.

        Integers are class ids, so a label past twice the number of distinct labels (e.g. a 7 among 0/1 labels,
        which would add six classes without examples) is refused as out of range.
        """
        ints = [_as_int(r) for r in raw]
        if all(i is not None for i in ints):
            for k, i in enumerate(ints):
                if i < 0:
                    path, line = where(k)
                    raise DataError(f"label {i} is negative; integer labels are class ids from 0", path=path,
                                    line=line)
            top = max(ints)
            distinct = len(set(ints))
            if top + 1 > 2 * distinct:
                path, line = where(ints.index(top))
                shown = str(top) if top < _HUGE else f"{str(raw[ints.index(top)]).strip()[:20]}..."
                raise DataError(f"label {shown} is out of range: only {distinct} distinct labels occur, and integer "
                                f"labels are class ids 0..C-1", path=path, line=line)
            unused = sorted(set(range(top + 1)) - set(ints))
            if unused:
                log.warning("integer labels run 0..%d but classes %s have no training example", top, unused)
            return cls([str(i) for i in range(top + 1)])
        return cls(sorted({str(r) for r in raw}))

    def ids(self, raw: Sequence[Any], where: Callable[[int], tuple[str, int]]) -> list[int]:
        out = []
        for k, r in enumerate(raw):
            i = self._id(r)
            if i is None:
                path, line = where(k)
                raise DataError(f"label {readers.shorten(r)} is not one of the {len(self.names)} classes "
                                f"({readers.show_names(self.names)})", path=path, line=line)
            out.append(i)
        return out

    def _id(self, r: Any) -> int | None:
        if isinstance(r, str):
            name = self._aliases.get(r.strip(), r.strip())
            if name in self._index:
                return self._index[name]
        i = _as_int(r)
        return i if i is not None and 0 <= i < len(self.names) else None


def _as_int(r: Any) -> int | None:
    """An integer label's value (clipped to +-`_HUGE`: no class id has more than 18 digits), or None for a name."""
    if isinstance(r, (int, np.integer)) and not isinstance(r, bool):
        return max(min(int(r), _HUGE), -_HUGE)
    if isinstance(r, str) and (m := re.fullmatch(r"\s*(-?)([0-9]+)\s*", r)):
        # int() of a long digit string is slow, or refused past 4300 digits; no class id is that long.
        return int(r) if len(m.group(2)) <= 18 else (-_HUGE if m.group(1) else _HUGE)
    return None


# ----------------------------------------------------------------------------------------------------------------
# Hub datasets (and local folders shaped like Hub dataset repositories)


def load_hub(name_or_folder: str | os.PathLike, *, text_column: str = "text", label_column: str = "label",
             label_names: Sequence[str] | None = None, label_text_column: str | None = None,
             label_aliases: Mapping[str, str] | None = None, config_name: str | None = None,
             revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> Any:
    """Loads a Hub dataset, or a local folder laid out like one (parquet/CSV/JSON files such as
    `data/train-*.parquet` or `train.csv`), through `datasets.load_dataset`, and normalises it.

    Splits are renamed train / dev (from validation, valid, val or dev) / test; others are left out with a
    warning. Labels: a ClassLabel column is matched by class name to `label_names` (through `label_aliases`);
    with `label_text_column` present, that column's names are used; plain integers are class ids. Without
    `label_names`, the Hub's ClassLabel names are kept, or names are inferred as in `load_files`.
    """
    import datasets

    ref = str(name_or_folder)
    cache = None if cache_dir is None else str(cache_dir)
    try:
        try:
            raw = datasets.load_dataset(ref, config_name, revision=revision, cache_dir=cache)
        except RuntimeError as e:
            if revision is not None or "scripts are no longer supported" not in str(e):
                raise
            # Script-based Hub datasets have a Parquet export on this branch, which datasets >= 4 can read.
            log.warning("%s is a script dataset; loading its Parquet export (refs/convert/parquet)", ref)
            raw = datasets.load_dataset(ref, config_name, revision="refs/convert/parquet", cache_dir=cache)
    except (OSError, ValueError, RuntimeError, datasets.exceptions.DatasetsError) as e:
        reason = (str(e).strip().splitlines() or [e.__class__.__name__])[0]
        raise DataError(f"cannot load {ref!r} with datasets.load_dataset: {e.__class__.__name__}: {reason}") from e
    if not isinstance(raw, datasets.DatasetDict):
        raw = datasets.DatasetDict({"train": raw})
    picked: dict[str, Any] = {}
    for split, ds in raw.items():
        ours = _HUB_SPLITS.get(split)
        if ours is None:
            log.warning("%s: leaving out split %r (only train, validation/dev and test are used)", ref, split)
        elif ours in picked:
            raise DataError(f"{ref}: two splits map to {ours!r}; pick the files yourself with load_files")
        else:
            picked[ours] = ds
    if "train" not in picked or len(picked["train"]) == 0:
        raise DataError(f"{ref}: no 'train' split with rows (found: {', '.join(raw) or 'nothing'})")
    raw_parts = {s: _hub_columns(ref, s, picked[s], text_column, label_column, label_text_column)
                 for s in SPLITS if s in picked}
    where = {s: (lambda k, s=s: (f"{ref}[{s}] row", k + 1)) for s in raw_parts}
    feature = picked["train"].features[label_column]
    if label_names is not None:
        labels = _LabelMap(label_names, label_aliases)
    elif isinstance(feature, datasets.ClassLabel) and label_text_column not in picked["train"].column_names:
        labels = _LabelMap(feature.names, label_aliases)
    else:
        labels = _LabelMap.infer(raw_parts["train"][1], where["train"])
    parts = {s: (texts, labels.ids(raw_labels, where[s])) for s, (texts, raw_labels) in raw_parts.items()}
    return _dataset_dict(parts, labels.names)


def _hub_columns(ref: str, split: str, ds: Any, text_column: str, label_column: str,
                 label_text_column: str | None) -> tuple[list[str], list[Any]]:
    import datasets

    for col in (text_column, label_column):
        if col not in ds.column_names:
            raise DataError(f"{ref}[{split}]: no column {col!r}; columns are: {', '.join(ds.column_names)}")
    rows = ds[:]
    texts = rows[text_column]
    for k, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"{text_column!r} is {type(t).__name__}, not a string", path=f"{ref}[{split}] row",
                            line=k + 1)
    if label_text_column and label_text_column in ds.column_names:
        return texts, rows[label_text_column]
    feature = ds.features[label_column]
    raw = rows[label_column]
    if isinstance(feature, datasets.ClassLabel):
        # -1 marks an unlabelled row (e.g. GLUE test sets); keep it so mapping reports it.
        raw = [feature.names[r] if 0 <= r < len(feature.names) else r for r in raw]
    return texts, raw


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the Hugging Face Hub can be asked at all: not in offline mode (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE),
    and its host (HF_ENDPOINT, default huggingface.co) answers a TCP connection within `timeout` seconds. Without
    this, `datasets` spends about half a minute retrying an unreachable Hub before it fails."""
    import socket
    import urllib.parse

    if any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
           for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    url = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _from_hub(spec: DatasetSpec, where: str | pathlib.Path, needed: str, *,
              fine_labels: bool, cache_dir: str | os.PathLike | None) -> Any:
    label_column, names = ("fine_label", TREC_FINE) if fine_labels else (
        "coarse_label" if spec.name == "trec" else spec.hub_label_column, spec.label_names)
    try:
        dsd = load_hub(spec.hub_id, text_column=spec.hub_text_column, label_column=label_column, label_names=names,
                       label_text_column=spec.hub_label_text_column, label_aliases=dict(spec.hub_label_aliases),
                       cache_dir=cache_dir)
    except DataError as e:
        raise DataError(f"{spec.name}: no local files and the Hub copy failed ({e}); put {needed} under {where}"
                        ) from e
    if spec.protocol == "cv":
        import datasets

        # Kim cross-validates over the whole set, so the Hub's fixed splits are pooled.
        dsd = datasets.DatasetDict({"train": datasets.concatenate_datasets([dsd[s] for s in SPLITS if s in dsd])})
    return dsd


# ----------------------------------------------------------------------------------------------------------------
# Local benchmark files


def _find(data_dir: pathlib.Path, rel: str) -> pathlib.Path | None:
    parts = pathlib.PurePosixPath(rel).parts
    if not parts or rel.startswith("/") or ".." in parts or "\\" in rel:
        raise ConfigError(f"dataset file {rel!r} must be a relative path inside the data folder, without '..'")
    candidates = [data_dir / rel]
    if not rel.startswith("sst-trees/"):  # "train.txt" is too generic a name to look for in a flat folder
        candidates.append(data_dir / pathlib.PurePath(rel).name)
    return next((c for c in candidates if c.is_file()), None)


def _require(data_dir: pathlib.Path, spec: DatasetSpec, found: Mapping[str, pathlib.Path | None]) -> None:
    missing = [rel for rel, path in found.items() if path is None]
    if missing:
        raise DataError(f"{spec.name}: found some of its files but not {', '.join(missing)}", path=data_dir)


# Each `_local_*` looks for a set's files in a folder and returns a function that reads them (None: no file of the
# set is there); a partial set is an error at once. Finding apart from reading lets `find` say where a set is, or
# that it is nowhere, without reading anything.
Loader = Callable[[], Any]


def _local_kim(data_dir: pathlib.Path, spec: DatasetSpec, suffix: str = "", **_: Any) -> Loader | None:
    found = {rel: _find(data_dir, rel + suffix) for _, rel in spec.local_files}
    if not any(found.values()):
        return None
    _require(data_dir, spec, found)

    def load() -> Any:
        parts = {split: readers.read_kim(found[rel], spec.num_classes) for split, rel in spec.local_files}
        return _dataset_dict(parts, spec.label_names)

    return load


def _local_mr(data_dir: pathlib.Path, spec: DatasetSpec, **_: Any) -> Loader | None:
    kim = _local_kim(data_dir, spec)
    if kim is not None:
        return kim
    found = {rel: _find(data_dir, rel) for rel in spec.alt_files}
    if not any(found.values()):
        return None
    _require(data_dir, spec, found)

    def load() -> Any:
        neg, pos = (readers.read_sentences(p) for p in found.values())
        return _dataset_dict({"train": (neg + pos, [0] * len(neg) + [1] * len(pos))}, spec.label_names)

    return load


def _local_sst(data_dir: pathlib.Path, spec: DatasetSpec, *, phrases: bool, **_: Any) -> Loader | None:
    kim = dict(spec.local_files)
    tree_files = {s: f"sst-trees/{s}.txt" for s in SPLITS}
    if not phrases:
        loader = _local_kim(data_dir, spec)
        if loader is not None:
            return loader
    sources = {s: (_find(data_dir, kim[s]), _find(data_dir, tree_files[s])) for s in SPLITS}
    if phrases and sources["train"][1] is None:
        if any(p for pair in sources.values() for p in pair):
            raise DataError(f"{spec.name}: training on phrases (--phrases, SST's default) needs "
                            f"{tree_files['train']}; --no-phrases trains on the sentences", path=data_dir)
        return None
    if not any(p for pair in sources.values() for p in pair):
        return None
    for s, (kim_path, tree_path) in sources.items():
        if ((phrases and s == "train") or kim_path is None) and tree_path is None:
            raise DataError(f"{spec.name}: found some of its files but neither {kim[s]} nor {tree_files[s]}",
                            path=data_dir)

    def load() -> Any:
        parts = {}
        for s, (kim_path, tree_path) in sources.items():
            if (phrases and s == "train") or kim_path is None:
                texts, labels = trees.read_trees(tree_path, phrases=phrases and s == "train")
                parts[s] = _sst_labels(texts, labels, binary=spec.name == "sst2")
            else:
                parts[s] = readers.read_kim(kim_path, spec.num_classes)
        return _dataset_dict(parts, spec.label_names)

    return load


def _sst_labels(texts: list[str], labels: list[int], binary: bool) -> tuple[list[str], list[int]]:
    """Tree labels are 0..4; SST-2 drops neutral (2) and maps 0-1 to 0 and 3-4 to 1."""
    if not binary:
        return texts, labels
    kept = [(t, int(lab > 2)) for t, lab in zip(texts, labels, strict=True) if lab != 2]
    return [t for t, _ in kept], [lab for _, lab in kept]


def _local_trec(data_dir: pathlib.Path, spec: DatasetSpec, *, fine_labels: bool, **_: Any) -> Loader | None:
    if not fine_labels:
        kim = _local_kim(data_dir, spec)
        if kim is not None:
            return kim
    found = {rel: _find(data_dir, rel) for rel in spec.alt_files}
    if not any(found.values()):
        return None
    _require(data_dir, spec, found)

    def load() -> Any:
        names = TREC_FINE if fine_labels else spec.label_names
        index = {n: i for i, n in enumerate(names)}
        parts = {}
        for split, path in zip(("train", "test"), found.values(), strict=True):
            texts, coarse, fine = readers.read_trec(path, spec.label_names)
            labels = fine if fine_labels else coarse
            for k, lab in enumerate(labels):
                if lab not in index:
                    raise DataError(f"unknown TREC label {lab!r}", path=path, line=k + 1)
            parts[split] = (texts, [index[lab] for lab in labels])
        return _dataset_dict(parts, names)

    return load


_LOCAL = {"mr": _local_mr, "sst1": _local_sst, "sst2": _local_sst, "trec": _local_trec, "subj": _local_kim,
          "cr": _local_kim, "mpqa": _local_kim}


def get_spec(name: str) -> DatasetSpec:
    key = name.lower().replace("-", "")
    if key not in DATASETS:
        raise ConfigError(f"--dataset: unknown dataset {readers.shorten(name)}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def load_splits(name: str, data_dir: str | os.PathLike | None = None, *, phrases: bool = False,
                fine_labels: bool = False, cache_dir: str | os.PathLike | None = None) -> Any:
    """Loads a benchmark set as a DatasetDict with `text` and `label` (ClassLabel) columns.

    Args:
      name: a DATASETS key ("mr", "sst1", "sst2", "subj", "trec", "cr", "mpqa").
      data_dir: folder with the files (see DatasetSpec.local_files); None reads $JAXCNN_DATA_DIR; without local
        files MR and TREC come from the copies bundled with jaxcnn, the others from the Hub.
      phrases: SST only: train on every labelled phrase of sst-trees/train.txt (deduplicated on lowercased text;
        SST-2 drops neutral phrases); dev and test stay whole sentences.
      fine_labels: TREC only: the 50 fine labels (TREC_FINE) instead of the 6 coarse ones.
      cache_dir: `datasets` cache for Hub downloads.

    Returns:
      DatasetDict with "train" (cv sets), "train"/"test" (TREC) or "train"/"dev"/"test" (SST).
    """
    return locate(name, data_dir, phrases=phrases, fine_labels=fine_labels, cache_dir=cache_dir)[0]


def default_phrases(name: str | None, phrases: bool | None) -> bool:
    """`--phrases` unless given: SST trains on every labelled phrase (Kim), the other sets have none."""
    return phrases if phrases is not None else name in ("sst1", "sst2")


def locate(name: str, data_dir: str | os.PathLike | None = None, *, phrases: bool = False,
           fine_labels: bool = False, cache_dir: str | os.PathLike | None = None) -> tuple[Any, str]:
    """`load_splits`, and where the set was found (see `find`)."""
    load, where = _found(name, data_dir, phrases=phrases, fine_labels=fine_labels, cache_dir=cache_dir)
    return load(), where


def find(name: str, data_dir: str | os.PathLike | None = None, *, phrases: bool = False,
         fine_labels: bool = False) -> str:
    """Where `load_splits` would read the set, without reading it: "<data folder>", "bundled with jaxcnn (...)" or
    "Hugging Face Hub (<id>)" (for the run's first log line). A set that is nowhere (no local files, not bundled,
    and the Hub unreachable or offline) is a one-line DataError naming the files and `--data-dir`, at once."""
    return _found(name, data_dir, phrases=phrases, fine_labels=fine_labels)[1]


def _found(name: str, data_dir: str | os.PathLike | None, *, phrases: bool, fine_labels: bool,
           cache_dir: str | os.PathLike | None = None) -> tuple[Loader, str]:
    spec = get_spec(name)
    if phrases and spec.name not in ("sst1", "sst2"):
        raise ConfigError(f"--phrases: only SST-1 and SST-2 have phrase labels, not {spec.name}")
    if fine_labels and spec.name != "trec":
        raise ConfigError(f"--fine-labels: only TREC has fine labels, not {spec.name}")
    folder = data_dir if data_dir is not None else os.environ.get("JAXCNN_DATA_DIR") or None
    folder = pathlib.Path(folder) if folder is not None else None
    if folder is not None and not folder.is_dir():
        raise DataError("data folder not found", path=folder)
    if folder is not None:
        local = _LOCAL[spec.name](folder, spec, phrases=phrases, fine_labels=fine_labels)
        if local is not None:
            return local, str(folder)
    if not phrases and not fine_labels:
        bundled = _local_kim(BUNDLED, spec, suffix=".xz")
        if bundled is not None:
            return bundled, f"bundled with jaxcnn ({BUNDLED})"
    where = f"{folder} (--data-dir)" if folder else "a data folder given by --data-dir (or JAXCNN_DATA_DIR)"
    kim_files = " and ".join(rel for _, rel in spec.local_files)
    if phrases:
        raise DataError(f"{spec.name}: training on phrases (SST's default; --no-phrases for sentences only) needs the "
                        f"SST trees: put sst-trees/train.txt (and {kim_files}) under {where}")
    needed = " and ".join(spec.alt_files) if fine_labels else (
        kim_files + (f" (or {' and '.join(spec.alt_files)})" if spec.alt_files else ""))
    if not hub_reachable():
        raise DataError(f"{spec.name}: not found: put {needed} under {where} (jaxcnn bundles only mr and trec, and "
                        f"the Hugging Face Hub is unreachable or offline)")
    return (lambda: _from_hub(spec, where, needed, fine_labels=fine_labels, cache_dir=cache_dir),
            f"Hugging Face Hub ({spec.hub_id})")


# ----------------------------------------------------------------------------------------------------------------
# Own data


def _infer_fmt(path: pathlib.Path) -> str:
    return {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix.lower(), "kim")


def _is_hub_ref(ref: str) -> bool:
    path = pathlib.Path(ref)
    return not path.exists() and bool(_HUB_REF.match(ref)) and path.suffix.lower() not in _FILE_SUFFIXES


def load_files(train_file: str | os.PathLike, dev_file: str | os.PathLike | None = None,
               test_file: str | os.PathLike | None = None, *,
               fmt: Literal["kim", "csv", "tsv", "jsonl", "auto"] = "kim", text_column: str = "text",
               label_column: str = "label", label_names: Sequence[str] | None = None, encoding: str = "auto") -> Any:
    """Loads your own data as a DatasetDict with `text` and `label` (ClassLabel) columns.

    Args:
      train_file: a file; or a folder shaped like a Hub dataset repository, or a Hub dataset id, both read by
        `load_hub` (then dev_file/test_file must be None).
      dev_file, test_file: optional files in the same format.
      fmt: "kim" (`<int label> <sentence>` lines), "csv" (header row, quoted fields), "tsv" (header row, tabs,
        no quoting), "jsonl" (one object a line), or "auto" (by suffix: .csv, .tsv, .jsonl/.json, else kim).
      text_column, label_column: column (or key) names for csv/tsv/jsonl.
      label_names: class names in id order. Labels may be these names or integer ids. Without it: integer labels
        give classes "0".."max"; string labels give their sorted distinct values from the training file.
      encoding: "auto" (UTF-8, else latin-1) or a Python codec name.

    Returns:
      DatasetDict with "train" and whichever of "dev"/"test" were given.
    """
    ref = str(train_file)
    if pathlib.Path(ref).is_dir() or _is_hub_ref(ref):
        if dev_file is not None or test_file is not None:
            raise ConfigError("--dev-file/--test-file: a Hub dataset or dataset folder brings its own splits")
        return load_hub(ref, text_column=text_column, label_column=label_column, label_names=label_names)
    if fmt not in ("kim", "csv", "tsv", "jsonl", "auto"):
        raise ConfigError(f"--format: unknown format {fmt!r}; choose kim, csv, tsv, jsonl or auto")
    given = zip(SPLITS, (train_file, dev_file, test_file), strict=True)
    files = {s: pathlib.Path(f) for s, f in given if f is not None}
    raw = {}
    for split, path in files.items():
        kind = _infer_fmt(path) if fmt == "auto" else fmt
        if kind == "kim":
            texts, labels = readers.read_kim(path, len(label_names) if label_names else None, encoding)
            raw[split] = (texts, labels, list(range(1, len(texts) + 1)))
        else:
            raw[split] = readers.read_table(path, kind, text_column, label_column, encoding)
    where = {s: (lambda k, s=s: (str(files[s]), raw[s][2][k])) for s in raw}
    labels = (_LabelMap(label_names) if label_names is not None
              else _LabelMap.infer(raw["train"][1], where["train"]))
    parts = {s: (texts, labels.ids(raw_labels, where[s])) for s, (texts, raw_labels, _) in raw.items()}
    return _dataset_dict(parts, labels.names)


# ----------------------------------------------------------------------------------------------------------------
# Protocols


def resolve_protocol(dsd: Any, protocol: Protocol, *, fold: int = 0, folds: int = 10, seed: int = 0,
                     dev_fraction: float = 0.1, stratify: bool = False) -> Any:
    """Turns loaded splits into exactly "train", "dev" and "test" (`jaxcnn.data.splits.protocol_rows` on the
    concatenated splits: "cv" pools them and cuts fold `fold`, "official" keeps them, "train_test" carves dev from
    train; `stratify` keeps class proportions in folds and dev sets)."""
    import datasets

    present = [s for s in SPLITS if s in dsd]
    pool = (datasets.concatenate_datasets([dsd[s] for s in present]) if len(present) > 1
            else dsd[present[0]] if present else None)
    given, start = {}, 0
    for s in present:
        given[s] = np.arange(start, start + len(dsd[s]))
        start += len(dsd[s])
    labels = (np.asarray(pool["label"][:]) if (stratify or protocol == "holdout") and pool is not None
              else None)
    rows = splits.protocol_rows(given, protocol, labels=labels, fold=fold, folds=folds, seed=seed,
                                dev_fraction=dev_fraction, stratify=stratify)
    return datasets.DatasetDict({s: pool.select(rows[s]) for s in SPLITS})
