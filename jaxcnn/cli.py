"""The `jaxcnn` command: train, evaluate, predict.

Every field of `jaxcnn.configs.Config` is a flag of `train` (`--batch-size 50`, `--windows 3 4 5`,
`--no-phrases`, `--max-norm none`). Errors in input are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import sys
import types
import typing
import warnings
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Literal, get_args, get_origin

from jaxcnn.configs import ENSEMBLE_METHODS, SECTIONS, Config, defaults, field_types
from jaxcnn.errors import ConfigError, DataError, JaxcnnError

PROG = "jaxcnn"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (`jaxcnn train: error: --epochs: ...`) and exit status 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_parser(tp: Any, flag: str):
    def parse(text: str):
        if text.lower() in ("none", "null"):
            return None
        try:
            value = tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {tp.__name__}, got {text!r}") from None
        if tp is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        return value

    parse.__name__ = tp.__name__
    return parse


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field; only the flags given on the command line override the config."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} config")
        hints = field_types(cls)
        for f in fields(cls):
            tp = hints[f.name]
            kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": f.name,
                                      "help": f"{f.metadata['help']} (default: {_show(f.default)})"}
            args = get_args(tp)
            optional = get_origin(tp) in (types.UnionType, typing.Union) and type(None) in args
            base = next((a for a in args if a is not type(None)), tp) if optional else tp
            if base is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif get_origin(base) is Literal:
                kwargs["choices"] = get_args(base)
            elif get_origin(base) is tuple:
                kwargs["nargs"] = "*"
                kwargs["type"] = get_args(base)[0]
                kwargs["metavar"] = get_args(base)[0].__name__.upper()
            else:
                kwargs["type"] = _scalar_parser(base, _flag(f.name))
                kwargs["metavar"] = base.__name__.upper()
            group.add_argument(_flag(f.name), **kwargs)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def config_file(path: str) -> Config:
    """The config in a JSON file (as WORKDIR/config.json); any problem is one line naming the file."""
    from jaxcnn.data.readers import read_json

    try:
        d = read_json(path)
    except DataError as e:
        raise ConfigError(f"--config: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"--config: {path}: expected a JSON object, found {type(d).__name__}")
    try:
        return Config.from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"--config: {path}: {e}") from None


def config_from_args(ns: argparse.Namespace) -> Config:
    # The image task starts from its own recipe; a config file replaces the defaults, flags override both.
    cfg = config_file(ns.config) if getattr(ns, "config", None) else defaults(getattr(ns, "task", "text"))
    overrides = {f.name: getattr(ns, f.name) for cls in SECTIONS.values() for f in fields(cls) if f.name in vars(ns)}
    if "windows" in overrides:
        overrides["windows"] = tuple(overrides["windows"])
    if "hidden" in overrides:
        overrides["hidden"] = tuple(overrides["hidden"])
    return cfg.replace(**overrides).validate()


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Convolutional neural networks in JAX/Flax (Kim 2014 first).")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)

    train = sub.add_parser("train", help="train (or resume) a model in a workdir")
    train.add_argument("--workdir", required=True, help="where checkpoints, metrics and the summary go")
    train.add_argument("--config", help="a JSON config (as in WORKDIR/config.json); flags override it")
    add_config_flags(train)

    ev = sub.add_parser("evaluate", help="metrics of a trained model as JSON")
    ev.add_argument("--workdir", required=True, help="the trained model's workdir")
    ev.add_argument("--split", default="test", choices=("train", "dev", "test"),
                    help="the split of the run's own data to score (default: test)")
    ev.add_argument("--file", help="a labelled file instead of a split (format from --format; image workdirs: a "
                    ".npz, an IDX images file or a class-folder tree)")
    ev.add_argument("--format", choices=("kim", "csv", "tsv", "jsonl"), default=None,
                    help="the format of --file (default: the run's)")
    ev.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                    help="the variables of the best dev epoch (default), or of the latest")
    ev.add_argument("--data-dir", default=None,
                    help="the data folder to read the split from (default: the run's, else JAXCNN_DATA_DIR, the "
                         "bundled copies, the Hub)")

    pr = sub.add_parser("predict", help="labels and probabilities, one JSON line per input")
    pr.add_argument("--workdir", required=True, help="the trained model's (or ensemble's) workdir")
    pr.add_argument("texts", nargs="*", help="sentences (image workdirs: image files); none: read --file or "
                    "standard input, one per line")
    pr.add_argument("--file", help="one sentence (or image path) per line ('-' for standard input)")
    pr.add_argument("--batch-size", type=int, default=256, help="inputs per batch (default: 256)")
    pr.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                    help="the variables of the best dev epoch (default), or of the latest")

    ex = sub.add_parser("explain", help="why each input got its label: the logits split over the deciding n-grams "
                        "(one JSON line per input)")
    ex.add_argument("--workdir", required=True, help="the trained Kim CNN's workdir (jaxcnn train on text)")
    ex.add_argument("texts", nargs="*", help="sentences; none: read --file or standard input, one per line")
    ex.add_argument("--file", help="one sentence per line ('-' for standard input)")
    ex.add_argument("--batch-size", type=int, default=256, help="inputs per batch (default: 256)")
    ex.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                    help="the variables of the best dev epoch (default), or of the latest")
    ex.add_argument("--format", choices=("json", "text"), default="json",
                    help="json: one record per input (default); text: the sentence with its deciding n-grams "
                         "marked (colour on a terminal)")
    ex.add_argument("--html", help="also write a self-contained HTML page: each sentence's tokens shaded by their "
                    "contribution to each class")
    ex.add_argument("--steps", type=int, default=None,
                    help="integrated-gradient points for a head with hidden layers or normalization (default 64)")

    fi = sub.add_parser("filters", help="what each filter learned: the n-grams of a split that activate it most, and "
                        "per class the n-grams that add the most to its logit (JSON)")
    fi.add_argument("--workdir", required=True, help="the trained Kim CNN's workdir (jaxcnn train on text)")
    fi.add_argument("--split", choices=("train", "dev", "test"), default="test",
                    help="the split of the run's own data to read (default: test)")
    fi.add_argument("--top", type=int, default=5, help="n-grams per filter and per class (default: 5)")
    fi.add_argument("--data-dir", default=None, help="the data folder, if the data moved since training")
    fi.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                    help="the variables of the best dev epoch (default), or of the latest")
    fi.add_argument("--out", help="also write OUT.md (markdown tables) and OUT.png (per class, its top n-grams)")

    add_experiment_parsers(sub)  # cv, search, ensemble, reproduce
    sub.add_parser("bench", help="speed and memory benchmarks: python scripts/benchmark.py (its --help says more)",
                   add_help=False)
    return parser


def add_experiment_parsers(sub) -> None:
    cv = sub.add_parser("cv", help="Kim's protocol (every CV fold) for several seeds, trained as one program")
    _common(cv)
    cv.add_argument("--seeds", default="1", help="how many seeds (from --seed on), or a comma list (default 1)")

    search = sub.add_parser("search", help="grid or random hyper-parameter search, vmapped where shapes agree")
    _common(search)
    search.add_argument("--grid", help="'lr=[0.5,1.0];dropout=[0.3,0.5]': every combination of the listed values")
    search.add_argument("--random", type=int, metavar="N", help="N random trials drawn from --ranges")
    search.add_argument("--ranges", help="'lr=loguniform(0.1,2);dropout=uniform(0.2,0.6);maps=[100,200]' "
                                         "(uniform, loguniform, int(a,b) or a list to choose from)")
    search.add_argument("--seeds", default="1", help="seeds per trial: a count or a comma list (default 1)")

    ens = sub.add_parser("ensemble", help="ensembles of K members: average, vote, stacking, bagging, boosting")
    _common(ens)
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


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", required=True, help="where the programs, results and plots go")
    parser.add_argument("--config", help="a JSON config (as in WORKDIR/config.json); flags override it")
    add_config_flags(parser)



def cmd_cv(ns: argparse.Namespace) -> int:
    cfg = config_from_args(ns)
    check_data(cfg)
    from jaxcnn.experiments.cv import cross_validate
    from jaxcnn.experiments.programs import parse_seeds

    result = cross_validate(cfg, ns.workdir, parse_seeds(ns.seeds, cfg.train.seed))
    print(json.dumps({"dataset": result["dataset"], "variant": result["variant"], "protocol": result["protocol"],
                      "members": len(result["members"]), **{f"test_{k}": v for k, v in
                                                            result["aggregate"]["seeds"].items()}}))
    return 0


def cmd_search(ns: argparse.Namespace) -> int:
    if (ns.grid is None) == (ns.random is None):
        raise ConfigError("search: give either --grid SPEC or --random N --ranges SPEC")
    if ns.random is not None and not ns.ranges:
        raise ConfigError("--random: needs --ranges SPEC")
    cfg = config_from_args(ns)
    check_data(cfg)
    from jaxcnn.experiments import search
    from jaxcnn.experiments.programs import parse_seeds

    trials = (search.grid_trials(ns.grid) if ns.grid is not None
              else search.random_trials(ns.ranges, ns.random, cfg.train.seed))
    result = search.search(cfg, ns.workdir, trials, parse_seeds(ns.seeds, cfg.train.seed))
    print(json.dumps({"best": result["best"]["values"], "dev_accuracy": result["best"]["dev_accuracy"],
                      "test_accuracy": result["best"]["test_accuracy"], "trials": len(result["trials"])}))
    return 0


def cmd_ensemble(ns: argparse.Namespace) -> int:
    methods = ENSEMBLE_METHODS if ns.method == "all" else tuple(m.strip() for m in ns.method.split(","))
    unknown = [m for m in methods if m not in ENSEMBLE_METHODS]
    if unknown:
        raise ConfigError(f"--method: unknown method {unknown[0]!r} (choices: {', '.join(ENSEMBLE_METHODS)}, all)")
    if ns.members < 2:
        raise ConfigError(f"--members: an ensemble needs at least 2 members, got {ns.members}")
    cfg = config_from_args(ns)
    check_data(cfg)
    from jaxcnn.experiments import ensemble

    result = ensemble.run_ensembles(cfg, ns.workdir, ns.members, methods)
    print(json.dumps({"single": result["single"], "methods": {k: {"test_accuracy": v["test_accuracy"],
                                                                   "beats_single": v["beats_single"]}
                                                               for k, v in result["methods"].items()},
                      "chosen": result["chosen"]}))
    return 0


def cmd_reproduce(ns: argparse.Namespace) -> int:
    from jaxcnn.experiments import reproduce
    from jaxcnn.experiments.programs import parse_seeds

    cfg = config_from_args(ns)
    result = reproduce.reproduce(cfg, ns.workdir, datasets=ns.datasets, variants=ns.variants,
                                 seeds=parse_seeds(ns.seeds, cfg.train.seed), quick=ns.quick,
                                 explicit=[k for k in reproduce.QUICK if k in vars(ns)], table_only=ns.table_only)
    print(json.dumps({"table": result["table_path"], "plot": result["plot_path"], "rows": len(result["rows"]),
                      "unfinished": result["unfinished"]}))
    return 0


def cmd_bench(ns: argparse.Namespace) -> int:
    """`python scripts/benchmark.py ...`: the benchmarks live beside the package, in a source checkout."""
    import pathlib
    import runpy

    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
    if not script.is_file():
        raise ConfigError("bench: the benchmarks live in jaxcnn's source checkout (benchmarks/, scripts/benchmark.py);"
                          " run them from a clone")
    argv = sys.argv
    sys.argv = [str(script), *ns.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return 0


def check_data(cfg: Config) -> None:
    """A registry set of the text task that is nowhere (no data folder holds it, it is not bundled, the Hub is
    unreachable) is a one-line error at once, before jax and the engine load."""
    d = cfg.data
    if d.task == "text" and d.train_file is None:
        from jaxcnn.data import registry

        registry.find(d.dataset, d.data_dir, phrases=registry.default_phrases(d.dataset, d.phrases),
                      fine_labels=d.fine_labels)


def cmd_train(ns: argparse.Namespace) -> int:
    cfg = config_from_args(ns)
    check_data(cfg)
    from jaxcnn.train.trainer import train_and_evaluate

    summary = train_and_evaluate(cfg, ns.workdir, callbacks=ns.callbacks)
    keys = ("dataset", "variant", "seed", "fold", "epochs", "best_epoch", "dev_accuracy", "test_accuracy",
            "wall_seconds", "train_examples_per_second")
    print(json.dumps({k: summary.get(k) for k in keys}))
    return 0


def cmd_evaluate(ns: argparse.Namespace) -> int:
    from jaxcnn.predict import Predictor

    predictor = Predictor.from_workdir(ns.workdir, checkpoint=ns.checkpoint)
    if ns.file:
        result = predictor.evaluate_file(ns.file, fmt=ns.format)
    else:
        result = predictor.evaluate_split(ns.split, data_dir=ns.data_dir)
    print(json.dumps(result))
    return 0


def _inputs(ns: argparse.Namespace):
    """The raw inputs of `predict`: the arguments, or the lines of --file or standard input, decoded as training
    files are (UTF-8, else latin-1; a NUL byte, i.e. a binary file, is a one-line error)."""
    from jaxcnn.data import readers

    if ns.texts:
        for i, text in enumerate(ns.texts, 1):
            # The arguments arrive decoded with the locale's codec and undecodable bytes escaped; start again from
            # their bytes so that they decode like everything else.
            yield readers.decode_line(os.fsencode(text), "argument", i)
        return
    if ns.file and ns.file != "-":
        yield from readers.read_lines(ns.file)
        return
    yield from readers.stream_lines(sys.stdin.buffer, "<stdin>")


def cmd_predict(ns: argparse.Namespace) -> int:
    from jaxcnn.predict import Predictor

    if ns.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {ns.batch_size}")
    predictor = Predictor.from_workdir(ns.workdir, checkpoint=ns.checkpoint)  # one model, or an ensemble
    out = sys.stdout.buffer
    for record in predictor.predict_stream(_inputs(ns), batch_size=ns.batch_size):
        # UTF-8 whatever the locale: a JSON line per input that any reader can parse.
        out.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    out.flush()
    return 0


def cmd_explain(ns: argparse.Namespace) -> int:
    from jaxcnn.explain_views import html_page, text_line
    from jaxcnn.predict import Predictor

    if ns.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {ns.batch_size}")
    if ns.steps is not None and ns.steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {ns.steps}")
    predictor = Predictor.from_workdir(ns.workdir, checkpoint=ns.checkpoint)
    out, colour = sys.stdout.buffer, sys.stdout.isatty()
    kept = []
    for record in predictor.explain_stream(_inputs(ns), ns.batch_size, ns.steps):
        line = json.dumps(record, ensure_ascii=False) if ns.format == "json" else text_line(record, colour)
        out.write((line + "\n").encode("utf-8"))  # UTF-8 whatever the locale, as predict
        out.flush()  # a record as soon as it is ready, also down a pipe
        if ns.html:
            kept.append(record)
    if ns.html:
        from jaxcnn.train.workdir import atomic_write_bytes

        atomic_write_bytes(ns.html, html_page(kept, predictor.label_names).encode("utf-8"))
    return 0


def cmd_filters(ns: argparse.Namespace) -> int:
    from jaxcnn.predict import Predictor

    if ns.top < 1:
        raise ConfigError(f"--top: must be >= 1, got {ns.top}")
    predictor = Predictor.from_workdir(ns.workdir, checkpoint=ns.checkpoint)
    texts, _ = predictor.split(ns.split, ns.data_dir)
    report = predictor.filters(texts, ns.top)
    if ns.out:
        from jaxcnn.explain_views import filters_markdown, plot_filters
        from jaxcnn.train.workdir import atomic_write_bytes

        atomic_write_bytes(f"{ns.out}.md", filters_markdown(report).encode("utf-8"))
        plot_filters(report, f"{ns.out}.png")
    sys.stdout.buffer.write((json.dumps(report, ensure_ascii=False) + "\n").encode("utf-8"))
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "explain": cmd_explain,
            "filters": cmd_filters,
            "bench": cmd_bench,
            "cv": cmd_cv, "search": cmd_search, "ensemble": cmd_ensemble, "reproduce": cmd_reproduce}


_default_showwarning = warnings.showwarning


def _show_warning(prefix: str, message, category, filename, lineno, file=None, line=None) -> None:
    """jaxcnn's own warnings (a skipped checkpoint, a torn metrics line) as one line, like its errors."""
    if category.__module__.startswith("jaxcnn"):
        print(f"{prefix}: warning: {message}", file=file or sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None, *, callbacks: Sequence[Any] = ()) -> int:
    """The `jaxcnn` command on `argv` (default: the process's arguments). `callbacks`: `jaxcnn.train.Callback`s
    for the training loop of `train` (the kill/resume harness in tools/ arms its faults through them).

    Unlike importing jaxcnn, this changes the process: warnings and log lines as one-liners, and the echoes of a
    failed checkpoint write kept out of the output (`jaxcnn.train.process.install_process_hooks`)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    head = 0
    while head < len(argv) and argv[head] in ("-q", "--quiet"):
        head += 1
    if argv[head:head + 1] == ["bench"]:  # everything after `bench` belongs to scripts/benchmark.py
        ns = parser.parse_args(argv[:head + 1])
        ns.args = argv[head + 1:]
    else:
        ns = parser.parse_args(argv)
    ns.callbacks = tuple(callbacks)
    warnings.showwarning = functools.partial(_show_warning, f"{PROG} {ns.command}")
    # Our progress lines at INFO; other libraries' (Orbax logs every save) only from WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("jaxcnn").setLevel(logging.WARNING if ns.quiet else logging.INFO)
    if ns.command != "bench":
        from jaxcnn.train.process import install_process_hooks

        install_process_hooks()
    try:
        return COMMANDS[ns.command](ns)
    except JaxcnnError as e:
        print(f"{PROG} {ns.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{PROG} {ns.command}: interrupted", file=sys.stderr)
        return 130


def exit_with(code: int) -> None:
    """Ends the process with `code`. An error exit skips the interpreter's shutdown: after a failed checkpoint
    write, TensorStore threads still finishing Orbax's abandoned writes call back into an event loop that shutdown
    has closed, and print tracebacks under the one-line error (seen in CI even after waiting for them). Everything
    the run keeps is already on disk (metrics lines are fsynced, checkpoints committed or left for the resume)."""
    if code:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def entry() -> None:
    """The `jaxcnn` console command."""
    exit_with(main())


if __name__ == "__main__":
    entry()
