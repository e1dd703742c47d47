"""The `jaxcnn` command: train, evaluate, predict.

Every field of `jaxcnn.configs.Config` is a flag of `train` (`--batch-size 50`, `--windows 3 4 5`,
`--no-phrases`, `--max-norm none`). Errors in input are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import types
import typing
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Literal, get_args, get_origin

from jaxcnn.configs import SECTIONS, Config, field_types
from jaxcnn.errors import ConfigError, JaxcnnError

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


def config_from_args(ns: argparse.Namespace) -> Config:
    cfg = Config()
    if getattr(ns, "config", None):
        try:
            with open(ns.config, encoding="utf-8") as fh:
                cfg = Config.from_dict(json.load(fh))
        except OSError as e:
            raise ConfigError(f"--config: cannot read {ns.config}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config: {ns.config}:{e.lineno}: not valid JSON ({e.msg})") from None
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
    ev.add_argument("--file", help="a labelled file instead of a split (format from --format)")
    ev.add_argument("--format", choices=("kim", "csv", "tsv", "jsonl"), default=None)
    ev.add_argument("--checkpoint", choices=("best", "latest"), default="best")

    pr = sub.add_parser("predict", help="labels and probabilities, one JSON line per input")
    pr.add_argument("--workdir", required=True)
    pr.add_argument("texts", nargs="*", help="sentences; none: read --file or standard input, one per line")
    pr.add_argument("--file", help="one sentence per line ('-' for standard input)")
    pr.add_argument("--batch-size", type=int, default=256)
    pr.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    return parser


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
    from jaxcnn.predict import Predictor

    if ns.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {ns.batch_size}")
    predictor = Predictor.from_workdir(ns.workdir, checkpoint=ns.checkpoint)
    out = sys.stdout
    for record in predictor.predict_stream(_lines(ns), batch_size=ns.batch_size):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
