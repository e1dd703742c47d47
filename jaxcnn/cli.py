"""The `jaxcnn` command: train, evaluate, predict.

Every field of `jaxcnn.configs.Config` is a flag of `train` (`--batch-size 50`, `--windows 3 4 5`,
`--no-phrases`, `--max-norm none`). Errors in input are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import types
import typing
import warnings
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Literal, get_args, get_origin

from jaxcnn.configs import SECTIONS, Config, defaults, field_types
from jaxcnn.errors import ConfigError, DataError, JaxcnnError
from jaxcnn.experiments import commands as experiment_commands

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
            return tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {tp.__name__}, got {text!r}") from None

    parse.__name__ = tp.__name__
    return parse


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per config field; only the flags given on the command line override the config."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} config")
        hints = field_types(cls)
        doc = _attribute_docs(cls)
        for f in fields(cls):
            tp = hints[f.name]
            kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": f.name,
                                      "help": f"{doc.get(f.name, '')} (default: {_show(f.default)})"}
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
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _attribute_docs(cls) -> dict[str, str]:
    """Field help from the `Attributes:` block of the section's docstring (first sentence per name)."""
    out: dict[str, str] = {}
    for line in (cls.__doc__ or "").splitlines():
        line = line.strip()
        if ":" in line and not line.endswith(":"):
            names, text = line.split(":", 1)
            for name in names.split("/"):
                out.setdefault(name.strip(), text.strip().split(". ")[0])
    return out


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
    overrides = {f.name: getattr(ns, f.name) for cls in SECTIONS.values() for f in fields(cls) if hasattr(ns, f.name)}
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
    ev.add_argument("--workdir", required=True)
    ev.add_argument("--split", default="test", choices=("train", "dev", "test"))
    ev.add_argument("--file", help="a labelled file instead of a split (format from --format; image workdirs: a "
                    ".npz, an IDX images file or a class-folder tree)")
    ev.add_argument("--format", choices=("kim", "csv", "tsv", "jsonl"), default=None)
    ev.add_argument("--checkpoint", choices=("best", "latest"), default="best")

    pr = sub.add_parser("predict", help="labels and probabilities, one JSON line per input")
    pr.add_argument("--workdir", required=True)
    pr.add_argument("texts", nargs="*", help="sentences (image workdirs: image files); none: read --file or "
                    "standard input, one per line")
    pr.add_argument("--file", help="one sentence (or image path) per line ('-' for standard input)")
    pr.add_argument("--batch-size", type=int, default=256)
    pr.add_argument("--checkpoint", choices=("best", "latest"), default="best")

    experiment_commands.add_parsers(sub, add_config_flags)  # cv, search, ensemble, reproduce
    bench = sub.add_parser("bench", help="speed and memory benchmarks (Kim CNN on MR); JSON + markdown")
    bench.add_argument("--data-dir", default=None, help="data folder (default: JAXCNN_DATA_DIR)")
    bench.add_argument("--only", default=None, help="comma-separated benchmark names (default: all)")
    bench.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    return parser


def cmd_bench(ns: argparse.Namespace) -> int:
    import os
    import pathlib

    from jaxcnn import bench

    names = list(bench.BENCHMARKS) if ns.only is None else [n.strip() for n in ns.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in bench.BENCHMARKS]
    if unknown:
        raise ConfigError(f"--only: unknown benchmark {unknown[0]!r} (choices: {', '.join(bench.BENCHMARKS)})")
    data_dir = ns.data_dir or os.environ.get("JAXCNN_DATA_DIR")
    if not data_dir:
        raise ConfigError("--data-dir: the benchmarks read MR from a local data folder; give --data-dir or set "
                          "JAXCNN_DATA_DIR")
    results = bench.run_benchmarks(names, data_dir, pathlib.Path(ns.out) if ns.out else None)
    print(bench.markdown(results))
    return 0


def cmd_train(ns: argparse.Namespace) -> int:
    cfg = config_from_args(ns)
    from jaxcnn.train.trainer import train_and_evaluate

    summary = train_and_evaluate(cfg, ns.workdir)
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
        result = predictor.evaluate_split(ns.split)
    print(json.dumps(result))
    return 0


def _lines(ns: argparse.Namespace):
    if ns.texts:
        yield from ns.texts
        return
    if ns.file and ns.file != "-":
        try:
            fh = open(ns.file, encoding="utf-8", errors="surrogateescape")
        except OSError as e:
            raise ConfigError(f"--file: cannot read {ns.file}: {e.strerror}") from None
    else:
        fh = sys.stdin
    with fh:
        for line in fh:
            yield line.rstrip("\r\n")


def cmd_predict(ns: argparse.Namespace) -> int:
    from jaxcnn.experiments.ensemble import EnsemblePredictor, is_ensemble
    from jaxcnn.predict import Predictor

    if ns.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {ns.batch_size}")
    if is_ensemble(ns.workdir):  # a `jaxcnn ensemble` workdir
        predictor = EnsemblePredictor.from_workdir(ns.workdir)
    else:
        predictor = Predictor.from_workdir(ns.workdir, checkpoint=ns.checkpoint)
    out = sys.stdout
    for record in predictor.predict_stream(_lines(ns), batch_size=ns.batch_size):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "bench": cmd_bench,
            **experiment_commands.COMMANDS}


_default_showwarning = warnings.showwarning


def _show_warning(prefix: str, message, category, filename, lineno, file=None, line=None) -> None:
    """jaxcnn's own warnings (a skipped checkpoint, a torn metrics line) as one line, like its errors."""
    if category.__module__.startswith("jaxcnn"):
        print(f"{prefix}: warning: {message}", file=file or sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    warnings.showwarning = functools.partial(_show_warning, f"{PROG} {ns.command}")
    # Our progress lines at INFO; other libraries' (Orbax logs every save) only from WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("jaxcnn").setLevel(logging.WARNING if ns.quiet else logging.INFO)
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
