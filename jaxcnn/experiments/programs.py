"""Members from a protocol, and one multi-member program run in a workdir."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from jaxcnn.configs import Config
from jaxcnn.errors import ConfigError
from jaxcnn.experiments.pool import Source, build_pool, split_rows
from jaxcnn.train.multi import Member, MultiRun


def parse_seeds(text: str | int, base: int = 0) -> list[int]:
    """`--seeds`: a count N (seeds base..base+N-1) or a comma list ("0,3,7")."""
    text = str(text).strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(base, base + int(text)))
    except ValueError:
        raise ConfigError(f"--seeds: expected a count or a comma list of integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: need at least one seed and no repeats, got {text!r}")
    return seeds


def protocol_members(cfg: Config, source: Source, seeds: Sequence[int]) -> list[Member]:
    """Kim's protocol for the dataset: every fold x seed for a CV set (`cfg.data.folds` folds), every seed on the
    one split otherwise. Splits are drawn with the config's seed (the split seed), so seeds vary only the
    training (init, data order, dropout) and all members of a fold share its sentences."""
    if source.protocol == "cv":
        members = []
        for fold in range(cfg.data.folds):
            rows = split_rows(source, cfg, fold=fold)
            members += [Member(f"fold {fold} seed {s}", s, rows["train"], rows["dev"], rows["test"], fold=fold)
                        for s in seeds]
        return members
    rows = split_rows(source, cfg)
    return [Member(f"seed {s}", s, rows["train"], rows["dev"], rows["test"]) for s in seeds]


def run_program(cfg: Config, source: Source, members: Sequence[Member], workdir: str | pathlib.Path) -> MultiRun:
    """Trains (or resumes) `members` as one program in `workdir`; the finished run holds their summaries
    (`summaries()`) and best params (`program.best_params`)."""
    pool = build_pool(cfg, source, [m.train for m in members], [m.seed for m in members])
    run = MultiRun(cfg, members, pool.data, workdir, tables=pool.tables)
    run.run()
    return run
