"""The `jaxcnn cv | search | ensemble | reproduce` subcommands (registered by `jaxcnn.cli`).

Each takes every config flag of `jaxcnn train` (the shared config of the members) plus its own. Heavy imports
happen inside the commands, so `jaxcnn --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from jaxcnn.errors import ConfigError

ENSEMBLE_METHODS = ("average", "vote", "stacking", "bagging", "boosting")


def add_parsers(sub, add_config_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    cv = sub.add_parser("cv", help="Kim's protocol (every CV fold) for several seeds, trained as one program")
    _common(cv, add_config_flags)
    cv.add_argument("--seeds", default="1", help="how many seeds (from --seed on), or a comma list (default 1)")

    search = sub.add_parser("search", help="grid or random hyper-parameter search, vmapped where shapes agree")
    _common(search, add_config_flags)
    search.add_argument("--grid", help="'lr=[0.5,1.0];dropout=[0.3,0.5]': every combination of the listed values")
    search.add_argument("--random", type=int, metavar="N", help="N random trials drawn from --ranges")
    search.add_argument("--ranges", help="'lr=loguniform(0.1,2);dropout=uniform(0.2,0.6);maps=[100,200]' "
                                         "(uniform, loguniform, int(a,b) or a list to choose from)")
    search.add_argument("--seeds", default="1", help="seeds per trial: a count or a comma list (default 1)")

    ens = sub.add_parser("ensemble", help="ensembles of K members: average, vote, stacking, bagging, boosting")
    _common(ens, add_config_flags)
    ens.add_argument("--members", type=int, default=5, help="members per ensemble (default 5)")
    ens.add_argument("--method", default="all",
                     help=f"comma list of {', '.join(ENSEMBLE_METHODS)}, or all (default); `jaxcnn predict` "
                          f"on the workdir uses the best of them on dev")

    rep = sub.add_parser("reproduce", help="Kim (2014) Table 2 under his protocol, with spread over seeds")
    rep.add_argument("--workdir", required=True)
    rep.add_argument("--config", help="a JSON config whose values the runs start from")
    add_config_flags(rep)
    rep.add_argument("--datasets", default="all", help="comma list of registry sets, or all (those present)")
    rep.add_argument("--variants", default="rand", help="comma list of rand, static, non-static, multichannel")
    rep.add_argument("--seeds", default="1", help="seeds per set: a count or a comma list (default 1)")
    rep.add_argument("--quick", action="store_true",
                     help="minutes, not hours: 3 folds, 3 epochs, a smaller model, SST on sentences (flags given win)")
    rep.add_argument("--table-only", action="store_true",
                     help="train nothing: write the table and plot from the sets already finished in --workdir")


def _common(parser: argparse.ArgumentParser, add_config_flags) -> None:
    parser.add_argument("--workdir", required=True, help="where the programs, results and plots go")
    parser.add_argument("--config", help="a JSON config (as in WORKDIR/config.json); flags override it")
    add_config_flags(parser)


def cmd_cv(ns: argparse.Namespace) -> int:
    from jaxcnn.cli import config_from_args
    from jaxcnn.experiments.cv import cross_validate
    from jaxcnn.experiments.programs import parse_seeds

    cfg = config_from_args(ns)
    result = cross_validate(cfg, ns.workdir, parse_seeds(ns.seeds, cfg.train.seed))
    print(json.dumps({"dataset": result["dataset"], "variant": result["variant"], "protocol": result["protocol"],
                      "members": len(result["members"]), **{f"test_{k}": v for k, v in
                                                            result["aggregate"]["seeds"].items()}}))
    return 0


def cmd_search(ns: argparse.Namespace) -> int:
    from jaxcnn.cli import config_from_args
    from jaxcnn.experiments import search
    from jaxcnn.experiments.programs import parse_seeds

    if (ns.grid is None) == (ns.random is None):
        raise ConfigError("search: give either --grid SPEC or --random N --ranges SPEC")
    if ns.random is not None and not ns.ranges:
        raise ConfigError("--random: needs --ranges SPEC")
    cfg = config_from_args(ns)
    trials = (search.grid_trials(ns.grid) if ns.grid is not None
              else search.random_trials(ns.ranges, ns.random, cfg.train.seed))
    result = search.search(cfg, ns.workdir, trials, parse_seeds(ns.seeds, cfg.train.seed))
    print(json.dumps({"best": result["best"]["values"], "dev_accuracy": result["best"]["dev_accuracy"],
                      "test_accuracy": result["best"]["test_accuracy"], "trials": len(result["trials"])}))
    return 0


def cmd_ensemble(ns: argparse.Namespace) -> int:
    from jaxcnn.cli import config_from_args
    from jaxcnn.experiments import ensemble

    methods = ENSEMBLE_METHODS if ns.method == "all" else tuple(m.strip() for m in ns.method.split(","))
    unknown = [m for m in methods if m not in ENSEMBLE_METHODS]
    if unknown:
        raise ConfigError(f"--method: unknown method {unknown[0]!r} (choices: {', '.join(ENSEMBLE_METHODS)}, all)")
    if ns.members < 2:
        raise ConfigError(f"--members: an ensemble needs at least 2 members, got {ns.members}")
    result = ensemble.run_ensembles(config_from_args(ns), ns.workdir, ns.members, methods)
    print(json.dumps({"single": result["single"], "methods": {k: {"test_accuracy": v["test_accuracy"],
                                                                   "beats_single": v["beats_single"]}
                                                               for k, v in result["methods"].items()},
                      "chosen": result["chosen"]}))
    return 0


def cmd_reproduce(ns: argparse.Namespace) -> int:
    from jaxcnn.cli import config_from_args
    from jaxcnn.experiments import reproduce
    from jaxcnn.experiments.programs import parse_seeds

    cfg = config_from_args(ns)
    result = reproduce.reproduce(cfg, ns.workdir, datasets=ns.datasets, variants=ns.variants,
                                 seeds=parse_seeds(ns.seeds, cfg.train.seed), quick=ns.quick,
                                 explicit=[k for k in reproduce.QUICK if hasattr(ns, k)], table_only=ns.table_only)
    print(json.dumps({"table": result["table_path"], "plot": result["plot_path"], "rows": len(result["rows"]),
                      "unfinished": result["unfinished"]}))
    return 0


COMMANDS = {"cv": cmd_cv, "search": cmd_search, "ensemble": cmd_ensemble, "reproduce": cmd_reproduce}
