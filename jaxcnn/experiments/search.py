"""`jaxcnn search`: grid and random hyper-parameter search, as few programs as the shapes allow.

Trials that differ only in vmappable values (`jaxcnn.train.program.VMAPPED_HPARAMS`: the optimizer's lr, rho, eps,
momentum, b1, b2 and the dropout rate) are members of one program; each distinct value of anything else (filter
windows, maps, embedding size, optimizer, batch size, ...) starts another program. All trials train on the same
split (the config's seed and fold) and are ranked by dev accuracy at their best epoch (mean over `--seeds`);
only the chosen configuration's test accuracy is reported, so the test set plays no part in the choice.

Workdir:
    config.json        the config the search starts from (`--config` takes it)
    search.json        the trials (a resumed search must ask for the same ones)
    program-<i>/       one program's workdir (`jaxcnn.train.trainer.Run`) per group of trials
    results.json/.md   trials sorted by dev accuracy; the chosen one with its test accuracy
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxcnn import tasks as tasks_lib
from jaxcnn.configs import FIELD_SECTION, Config
from jaxcnn.errors import ConfigError, WorkdirError
from jaxcnn.experiments import report
from jaxcnn.train.program import VMAPPED_HPARAMS
from jaxcnn.train.trainer import RESULT_NEUTRAL, member_for, train_members
from jaxcnn.train.workdir import WorkdirLock, atomic_write_json, atomic_write_text, check_config

log = logging.getLogger("jaxcnn")

_RANGE = re.compile(r"(uniform|loguniform|int)\(\s*([^,\s]+)\s*,\s*([^,\s]+)\s*\)\Z")


def _entries(spec: str, flag: str) -> list[tuple[str, str]]:
    out = []
    for part in (p.strip() for p in spec.split(";")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not value.strip():
            raise ConfigError(f"{flag}: expected name=values, got {part!r}")
        if name not in FIELD_SECTION:
            raise ConfigError(f"{flag}: {name!r} is not a config field")
        out.append((name, value.strip()))
    if not out:
        raise ConfigError(f"{flag}: no hyper-parameters given")
    if len({n for n, _ in out}) != len(out):
        raise ConfigError(f"{flag}: a hyper-parameter is given twice in {spec!r}")
    return out


def _values(name: str, text: str, flag: str) -> list[Any]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"{flag}: {name}={text} is not a JSON list such as [0.5, 1.0]") from None
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{flag}: {name} needs a non-empty list of values, got {text}")
    return values


def grid_trials(spec: str) -> list[dict[str, Any]]:
    """Every combination of `'lr=[0.5,1.0];dropout=[0.3,0.5]'` (JSON lists; `windows=[[3,4,5],[2,3,4]]`)."""
    entries = [(name, _values(name, text, "--grid")) for name, text in _entries(spec, "--grid")]
    names = [n for n, _ in entries]
    return [dict(zip(names, combo)) for combo in itertools.product(*(v for _, v in entries))]


def random_trials(spec: str, n: int, seed: int) -> list[dict[str, Any]]:
    """`n` trials drawn from `'lr=loguniform(0.1,2);dropout=uniform(0.2,0.6);maps=int(50,200);windows=[...]'`
    (a list: a uniform choice among its values), seeded by `seed`."""
    if n < 1:
        raise ConfigError(f"--random: need at least 1 trial, got {n}")
    rng = np.random.default_rng([seed, 104729])
    entries = _entries(spec, "--ranges")
    trials: list[dict[str, Any]] = [{} for _ in range(n)]
    for name, text in entries:
        match = _RANGE.match(text)
        if match is None:
            values = _values(name, text, "--ranges")
            for t in trials:
                t[name] = values[int(rng.integers(len(values)))]
            continue
        kind, lo, hi = match.group(1), _number(match.group(2), name), _number(match.group(3), name)
        if not lo < hi or (kind == "loguniform" and lo <= 0):
            raise ConfigError(f"--ranges: {name}={text} needs low < high (and low > 0 for loguniform)")
        for t in trials:
            if kind == "uniform":
                t[name] = float(rng.uniform(lo, hi))
            elif kind == "loguniform":
                t[name] = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            else:
                t[name] = int(rng.integers(int(lo), int(hi) + 1))
    return trials


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--ranges: {name}: {text!r} is not a number") from None


def group_trials(cfg: Config, trials: Sequence[dict[str, Any]]) -> list[tuple[Config, list[int]]]:
    """[(program config, trial indices)]: trials whose non-vmappable values agree share one program."""
    groups: dict[str, tuple[Config, list[int]]] = {}
    for i, trial in enumerate(trials):
        static = {k: v for k, v in trial.items() if k not in VMAPPED_HPARAMS}
        try:
            cfg.replace(**_as_config(trial)).validate()
            program_cfg = cfg.replace(**_as_config(static))
        except ConfigError as e:
            raise ConfigError(f"trial {i} {json.dumps(trial)}: {e}") from None
        key = json.dumps(static, sort_keys=True)
        groups.setdefault(key, (program_cfg, []))[1].append(i)
    return list(groups.values())


def _as_config(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def search(cfg: Config, workdir: str | pathlib.Path, trials: Sequence[dict[str, Any]],
           seeds: Sequence[int] = (0,)) -> dict[str, Any]:
    """Runs (or resumes) the trials and writes results.json/.md. Returns the results."""
    cfg.validate()
    workdir = pathlib.Path(workdir)
    groups = group_trials(cfg, trials)
    with WorkdirLock(workdir):
        check_config(workdir, cfg.to_dict(), ignore=RESULT_NEUTRAL)
        _pin_trials(workdir, trials, seeds)
    task = tasks_lib.get(cfg.data.task)
    examples = task.load(cfg)
    scores: list[dict[str, Any]] = [{} for _ in trials]
    for p, (program_cfg, indices) in enumerate(groups):
        members = [member_for(cfg, examples, seed=s, name=f"trial {i} seed {s}",
                              hparams={k: float(v) for k, v in trials[i].items() if k in VMAPPED_HPARAMS})
                   for i in indices for s in seeds]
        log.info("program %d: trials %s (%d members)", p, indices, len(members))
        summaries = train_members(program_cfg, members, workdir / f"program-{p}", task=task,
                                  examples=examples).member_summaries()
        for j, i in enumerate(indices):
            mine = summaries[j * len(seeds):(j + 1) * len(seeds)]
            scores[i] = {"trial": i, "values": trials[i], "program": f"program-{p}",
                         "dev_accuracy": float(np.mean([m["dev_accuracy"] for m in mine])),
                         "best_epochs": [m["best_epoch"] for m in mine],
                         "_test": [m["test_accuracy"] for m in mine]}
    ranked = sorted(scores, key=lambda s: (-s["dev_accuracy"], s["trial"]))
    best = dict(ranked[0])
    best["test_accuracy"] = float(np.mean(best["_test"]))
    best["test_per_seed"] = best["_test"]
    for s in [best, *ranked]:
        s.pop("_test", None)
    result = {"dataset": report.dataset_name(cfg), "variant": cfg.model.variant,
              "seeds": list(seeds), "trials": ranked, "best": best}
    atomic_write_json(workdir / "results.json", result)
    atomic_write_text(workdir / "results.md", _table(result))
    return result


def _pin_trials(workdir: pathlib.Path, trials: Sequence[dict[str, Any]], seeds: Sequence[int]) -> None:
    path = workdir / "search.json"
    wanted = {"trials": list(trials), "seeds": list(seeds)}
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise WorkdirError(f"{path}: cannot read the pinned trials ({e}); use another --workdir") from None
        if old != json.loads(json.dumps(wanted)):
            raise WorkdirError(f"{workdir} holds another search ({path}); use another --workdir")
    atomic_write_json(path, wanted)


def _table(result: dict[str, Any]) -> str:
    names = list(result["trials"][0]["values"])
    lines = ["| rank | trial | " + " | ".join(names) + " | dev accuracy | test accuracy |",
             "|" + "---|" * (len(names) + 4)]
    for rank, t in enumerate(result["trials"], 1):
        test = report.pct(result["best"]["test_accuracy"], 2) if rank == 1 else "(not looked at)"
        cells = [_show(t["values"][n]) for n in names]
        lines.append(f"| {rank} | {t['trial']} | " + " | ".join(cells) +
                     f" | {report.pct(t['dev_accuracy'], 2)} | {test} |")
    return "\n".join([f"# Search on {result['dataset']} (CNN-{result['variant']}), ranked by dev accuracy", "",
                      *lines, ""])


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
