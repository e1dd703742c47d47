"""`jaxcnn reproduce`: Kim (2014) Table 2 under his protocol, with the spread over seeds.

For every dataset x variant it runs `jaxcnn cv` (10-fold CV for MR/Subj/CR/MPQA, the official splits for SST,
TREC's test set with 10% of train as dev), all folds and seeds as one program, in WORKDIR/<dataset>-<variant>/.
Each of those resumes where it stopped, so an interrupted `reproduce` picks up at the same epoch of the same set.
Then it writes WORKDIR/table.md (ours: mean ± std, min, max over seeds, beside Kim's and the Torch port's
numbers), WORKDIR/results.json and WORKDIR/seeds.png (a dot per seed, the paper's value as a line, and
ours minus the paper below).

`--quick` is a smoke version that finishes in minutes on a CPU: 3 folds, 3 epochs, 50 maps per window, 64-d
random embeddings, SST trained on sentences (not phrases). Its numbers are below the paper's by design.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import statistics
from collections.abc import Sequence
from typing import Any

from jaxcnn import data as data_lib
from jaxcnn.configs import VARIANTS, Config
from jaxcnn.data.readers import read_json
from jaxcnn.errors import ConfigError
from jaxcnn.experiments import report
from jaxcnn.experiments.cv import cross_validate
from jaxcnn.train.workdir import atomic_write_json, atomic_write_text

log = logging.getLogger("jaxcnn")

QUICK = {"epochs": 3, "folds": 3, "phrases": False, "maps": 50, "embed_dim": 64}


def available_datasets(data_dir: str | None) -> list[str]:
    """The registry sets whose files are in the data folder, in registry order."""
    folder = data_dir or os.environ.get("JAXCNN_DATA_DIR")
    if not folder:
        raise ConfigError("--datasets all: needs a data folder (--data-dir or JAXCNN_DATA_DIR) to see which sets "
                          "are present; or list them")
    root = pathlib.Path(folder)

    def present(rel: str) -> bool:
        return (root / rel).is_file() or (root / pathlib.PurePath(rel).name).is_file()

    return [name for name, spec in data_lib.DATASETS.items()
            if any(present(rel) for _, rel in spec.local_files) or any(present(rel) for rel in spec.alt_files)]


def _names(text: str, choices: Sequence[str], flag: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in choices]
    if bad or not names:
        raise ConfigError(f"{flag}: unknown {bad[0] if bad else 'empty list'!r} (choices: {', '.join(choices)})")
    return names


def reproduce(cfg: Config, workdir: str | pathlib.Path, *, datasets: str = "all", variants: str = "rand",
              seeds: Sequence[int] = (0,), quick: bool = False, explicit: Sequence[str] = (),
              table_only: bool = False) -> dict[str, Any]:
    """Runs (or resumes) every dataset x variant and writes the table and plot.

    `--embeddings` serves the pretrained variants; CNN-rand rows run without it, so one command can ask for
    `--variants rand,static,non-static,multichannel`.

    Args:
      quick: apply `QUICK`, except the fields named in `explicit` (given on the command line).
      table_only: train nothing: the table and plot of the sets already finished in `workdir` (each from its
        own results.json), the others listed as not finished. For a look while a long run goes on elsewhere.
    Returns:
      {"rows": [...], "table_path", "plot_path", "unfinished": ["dataset-variant", ...]}.
    """
    workdir = pathlib.Path(workdir)
    kinds = _names(variants, VARIANTS, "--variants")
    names = (available_datasets(cfg.data.data_dir) if datasets == "all"
             else _names(datasets, list(data_lib.DATASETS), "--datasets"))
    if not names:
        raise ConfigError(f"--datasets all: no benchmark set found in {cfg.data.data_dir}")
    rows, unfinished = [], []
    for variant in kinds:
        for name in names:
            overrides: dict[str, Any] = {"dataset": name, "variant": variant, "train_file": None}
            if variant == "rand":
                overrides["embeddings"] = None
            if quick:
                overrides.update({k: v for k, v in QUICK.items() if k not in explicit})
            run_cfg = cfg.replace(**overrides).validate()
            set_dir = workdir / f"{name}-{variant}"
            if table_only:
                done = set_dir / "results.json"
                if not done.is_file():
                    unfinished.append(f"{name}-{variant}")
                    continue
                # The finished program's own files (a damaged one is a one-line error naming it).
                result = read_json(done)
                run_cfg = Config.from_dict(read_json(set_dir / "config.json"))
            else:
                log.info("reproduce: %s CNN-%s", name, variant)
                result = cross_validate(run_cfg, set_dir, seeds)
            rows.append(_row(result, run_cfg))
    if table_only and not rows:
        raise ConfigError(f"--table-only: no finished set in {workdir} (unfinished: {', '.join(unfinished)})")
    table = _table(rows, quick, unfinished)
    atomic_write_text(workdir / "table.md", table)
    atomic_write_json(workdir / "results.json", {"quick": quick, "seeds": list(seeds), "rows": rows})
    report.plot_seed_dots(rows, workdir / "seeds.png", title="Kim (2014) Table 2: ours per seed vs the paper"
                          + (" (quick mode)" if quick else ""))
    return {"rows": rows, "table_path": str(workdir / "table.md"), "plot_path": str(workdir / "seeds.png"),
            "unfinished": unfinished}


def _row(result: dict[str, Any], cfg: Config) -> dict[str, Any]:
    agg = result["aggregate"]
    return {"dataset": cfg.data.dataset, "variant": cfg.model.variant, "protocol": result["protocol"],
            "folds": result["folds"], "epochs": cfg.train.epochs,
            "epochs_run": max(m["epochs"] for m in result["members"]),
            "best_epochs": [m["best_epoch"] for m in result["members"]], "members": agg["members"],
            "member_scores": [m["test_accuracy"] for m in result["members"]],
            "per_seed": agg["per_seed"], **{
                f"test_{k}": v for k, v in agg["seeds"].items()},
            "kim_2014": report.KIM_2014.get(cfg.data.dataset, {}).get(cfg.model.variant),
            "torch_port": report.TORCH_PORT.get(cfg.data.dataset, {}).get(cfg.model.variant),
            "phrases": cfg.data.phrases, "wall_seconds": result["wall_seconds"],
            "config": dataclasses.asdict(cfg.model)}


def _table(rows: Sequence[dict[str, Any]], quick: bool, unfinished: Sequence[str] = ()) -> str:
    lines = ["# Kim (2014) Table 2, reproduced" + (" (quick mode: not comparable)" if quick else ""), "",
             "Test accuracy (%). Ours: mean ± std over seeds (CV sets: each seed's mean over folds), with min and "
             "max. Every member: each fold and seed on its own, mean ± std (min-max). Epochs: run of the most "
             "(early stopping on dev), and the best dev epoch of each member (its test score is the one counted).",
             "",
             "| dataset | variant | ours | min | max | seeds | every member | Kim (2014) | sent-conv-torch | "
             "protocol | epochs | best epochs | wall time |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = {k[5:]: r[k] for k in ("test_mean", "test_std", "test_min", "test_max", "test_n")}
        protocol = f"{r['folds']}-fold CV" if r["protocol"] == "cv" else r["protocol"]
        lines.append(f"| {r['dataset']} | {r['variant']} | {report.mean_std(s)} | {report.pct(s['min'])} | "
                     f"{report.pct(s['max'])} | {s['n']} | {_spread(r['members'])} | {r['kim_2014'] or '-'} | "
                     f"{r['torch_port'] or '-'} | {protocol} | {_epochs(r)} | {_best(r['best_epochs'])} | "
                     f"{r['wall_seconds'] / 60:.0f} min |")
    if unfinished:
        lines += ["", f"Not finished yet: {', '.join(unfinished)}."]
    return "\n".join([*lines, ""])


def _epochs(row: dict[str, Any]) -> str:
    ran = row.get("epochs_run", row["epochs"])
    return str(ran) if ran == row["epochs"] else f"{ran} of {row['epochs']}"


def _best(epochs: Sequence[int]) -> str:
    if not epochs:
        return "-"
    lo, hi = min(epochs), max(epochs)
    return str(lo) if lo == hi else f"{lo}-{hi} (median {statistics.median(epochs):g})"


def _spread(s: dict[str, Any]) -> str:
    if s["n"] < 2:
        return "-"
    return f"{report.mean_std(s)} ({report.pct(s['min'])}-{report.pct(s['max'])})"
