"""`jaxcnn cv`: Kim's protocol with every fold and seed trained as one program.

Writes into the workdir (beside the program's own files, see `jaxcnn.train.trainer`):
    results.json   per-member results and the aggregate (mean, std, min, max over seeds and over members)
    results.md     the per-member table and the aggregate line
    results.png    a dot per seed (rings: each member), Kim (2014)'s value and the Torch port's as lines;
                   below, the same points as ours minus Kim
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Sequence
from typing import Any

from jaxcnn import tasks as tasks_lib
from jaxcnn.configs import Config
from jaxcnn.experiments import report
from jaxcnn.experiments.programs import protocol_members
from jaxcnn.train.trainer import train_members
from jaxcnn.train.workdir import atomic_write_json, atomic_write_text

log = logging.getLogger("jaxcnn")


def cross_validate(cfg: Config, workdir: str | pathlib.Path, seeds: Sequence[int] = (0,)) -> dict[str, Any]:
    """Trains (or resumes) the dataset's protocol for `seeds` in `workdir` and writes the results.

    Returns:
      {"dataset", "variant", "protocol", "folds", "seeds", "members": [summary per member], "aggregate": ...,
       "wall_seconds"}.
    """
    cfg.validate()
    workdir = pathlib.Path(workdir)
    task = tasks_lib.get(cfg.data.task)
    examples = task.load(cfg)
    members = protocol_members(cfg, examples, seeds)
    run = train_members(cfg, members, workdir, task=task, examples=examples)
    summaries = run.member_summaries()
    result = {"dataset": report.dataset_name(cfg), "variant": cfg.model.variant,
              "protocol": examples.protocol, "folds": cfg.data.folds if examples.protocol == "cv" else None,
              "seeds": list(seeds), "epochs": cfg.train.epochs, "members": summaries,
              "aggregate": report.aggregate(summaries), "wall_seconds": run.progress.wall_seconds}
    write_results(workdir, result)
    return result


def write_results(workdir: pathlib.Path, result: dict[str, Any]) -> None:
    agg = result["aggregate"]
    columns = ("name", "fold", "seed", "best_epoch", "dev_accuracy", "test_accuracy")
    lines = [f"# {result['dataset']} CNN-{result['variant']}: {result['protocol']} protocol, "
             f"{len(result['members'])} members, {result['epochs']} epochs", "",
             report.member_table(result["members"], columns), "",
             f"Test accuracy over seeds{' (a seed scores its mean over folds)' if result['folds'] else ''}: "
             f"{report.stats_line(agg['seeds'])}", "",
             f"Over all members: {report.stats_line(agg['members'])}", ""]
    dataset, variant = result["dataset"], result["variant"]
    kim = report.KIM_2014.get(dataset, {}).get(variant)
    torch = report.TORCH_PORT.get(dataset, {}).get(variant)
    if kim is not None:
        lines += [f"Kim (2014): {kim}; sent-conv-torch: {torch}.", ""]
    atomic_write_json(workdir / "results.json", result)
    atomic_write_text(workdir / "results.md", "\n".join(lines))
    report.plot_seed_dots([{"dataset": dataset, "variant": variant, "per_seed": agg["per_seed"],
                            "member_scores": [m["test_accuracy"] for m in result["members"]]}],
                          workdir / "results.png", title=f"{dataset} CNN-{variant}")
    log.info("%s CNN-%s: test accuracy %s", dataset, variant, report.stats_line(agg["seeds"]))
