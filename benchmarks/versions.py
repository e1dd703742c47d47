"""Single-run training (and inference) throughput of two source trees of jaxcnn, paired in one run: did a change
slow them?

    python benchmarks/versions.py --old ../baseline --new . --data-dir ../shared/data --pairs 5
    python benchmarks/versions.py --old ../baseline --new . --data-dir ../shared/data --pairs 8 --mode block

`--mode epoch` (default): each pair trains `jaxcnn train --dataset mr` (Kim's CNN-rand, fold 0, one device, no plots
or TensorBoard) for `--epochs` epochs with each tree's own code (`PYTHONPATH=<tree>`), the two in alternating
order; a run's figure is the median of its epochs' training throughput (metrics.jsonl, `examples_per_second` of the
train records) from the second epoch on (the first includes compilation).
`--mode block`: each tree's own benchmark of one block of 50 training steps and of inference on 1000 sentences
(`KimBench`: `benchmarks.suite`, or `jaxcnn.bench` in trees from before the benchmarks moved out of the package),
the median of 5 repeats each, in a process per tree and pair.

The result is the median over pairs of new / old: the machine is shared, so absolute rates drift while paired
ratios hold. Any two trees work (e.g. a `git worktree` of the commit before a change).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile


def train_rate(tree: pathlib.Path, data_dir: str, epochs: int, workdir: pathlib.Path, extra: list[str]) -> float:
    """Median training examples/s of epochs 2.. of one `jaxcnn train` with `tree`'s code."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(tree.resolve())
    subprocess.run([sys.executable, "-m", "jaxcnn.cli", "-q", "train", "--dataset", "mr", "--data-dir", data_dir,
                    "--epochs", str(epochs), "--devices", "1", "--workdir", str(workdir), "--no-progress",
                    "--no-plots", "--no-tensorboard", *extra], check=True, env=env, capture_output=True, timeout=3600,
                   cwd=tree)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["examples_per_second"] for r in records if r["kind"] == "train" and r["epoch"] >= 2]
    return statistics.median(rates)


_BLOCK = """
import json, sys
try:
    from benchmarks.suite import KimBench
except ImportError:
    from jaxcnn.bench import KimBench
bench = KimBench(sys.argv[1])
print(json.dumps({"train": bench.train_rate(5), "infer": bench.infer_rate(5)}))
"""


def block_rates(tree: pathlib.Path, data_dir: str) -> dict[str, float]:
    """{"train", "infer"} examples/s of `tree`'s own `KimBench`."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(tree.resolve())
    out = subprocess.run([sys.executable, "-c", _BLOCK, data_dir], check=True, env=env, capture_output=True,
                         text=True, timeout=3600, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="the source tree before the change")
    parser.add_argument("--new", required=True, help="the source tree after it")
    parser.add_argument("--data-dir", default=os.environ.get("JAXCNN_DATA_DIR"))
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mode", choices=("epoch", "block"), default="epoch")
    parser.add_argument("extra", nargs="*", help="more `jaxcnn train` flags, for both")
    ns = parser.parse_args(argv)
    if not ns.data_dir:
        parser.error("--data-dir: give the data folder or set JAXCNN_DATA_DIR")
    trees = {"old": pathlib.Path(ns.old), "new": pathlib.Path(ns.new)}
    pairs = []
    with tempfile.TemporaryDirectory(prefix="jaxcnn-versions-") as tmp:
        for i in range(ns.pairs):
            order = ("old", "new") if i % 2 == 0 else ("new", "old")
            if ns.mode == "epoch":
                rates = {name: {"train": train_rate(trees[name], ns.data_dir, ns.epochs,
                                                    pathlib.Path(tmp) / f"{name}{i}", ns.extra)} for name in order}
            else:
                rates = {name: block_rates(trees[name], ns.data_dir) for name in order}
            pairs.append(rates)
            print(f"pair {i}: " + ", ".join(f"{kind} old {rates['old'][kind]:.0f} new {rates['new'][kind]:.0f} ex/s "
                                            f"({rates['new'][kind] / rates['old'][kind]:.3f})"
                                            for kind in rates["old"]), file=sys.stderr, flush=True)
    out: dict = {"mode": ns.mode, "pairs": pairs, "load_average": os.getloadavg()}
    for kind in pairs[0]["old"]:
        ratios = [p["new"][kind] / p["old"][kind] for p in pairs]
        out[kind] = {"ratio": statistics.median(ratios), "ratios": ratios,
                     "old_examples_per_s": statistics.median(p["old"][kind] for p in pairs),
                     "new_examples_per_s": statistics.median(p["new"][kind] for p in pairs)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
