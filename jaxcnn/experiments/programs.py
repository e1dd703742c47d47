"""Members from a protocol, and the `--seeds` flag."""

from __future__ import annotations

from collections.abc import Sequence

from jaxcnn.configs import Config
from jaxcnn.errors import ConfigError
from jaxcnn.tasks.api import Examples
from jaxcnn.train.program import Member
from jaxcnn.train.trainer import member_for


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


def protocol_members(cfg: Config, examples: Examples, seeds: Sequence[int]) -> list[Member]:
    """Kim's protocol for the dataset: every fold x seed for a CV set (`cfg.data.folds` folds), every seed on the
    one split otherwise. Splits are drawn with the config's seed (the split seed), so seeds vary only the
    training (init, data order, dropout) and all members of a fold share its sentences."""
    folds = range(cfg.data.folds) if examples.protocol == "cv" else [cfg.data.fold]
    return [member_for(cfg, examples, seed=s, fold=f) for f in folds for s in seeds]
