"""The kill/resume check, long form: train, SIGKILL at random moments, re-run the same command, compare.

    python scripts/kill_resume.py --kills 8 --epochs 12 --seed 0 --root /tmp/kill-resume

Writes a synthetic data set, trains an uninterrupted reference run, then trains the same run while killing it
with SIGKILL `--kills` times (once during an asynchronous checkpoint save, once inside an evaluation, once between
steps, once halfway through a metrics line, the rest from outside after random delays), re-running the same
command after each kill. Prints a Markdown table of the kills (what was lost each time) and exits non-zero unless
the final parameters, optimizer state, metrics.jsonl and summary.json equal the reference's, bit for bit.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tools import faults  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=8, help="kills in the run (at least 5 checks everything)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs of the run (more than --kills)")
    parser.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints")
    parser.add_argument("--train-examples", type=int, default=1600, help="size of the synthetic training set")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill plan")
    parser.add_argument("--root", help="folder for data, workdirs and logs (default: a new temporary folder)")
    parser.add_argument("--devices", type=int, default=1, help="devices to train on")
    ns = parser.parse_args(argv)
    root = pathlib.Path(ns.root or tempfile.mkdtemp(prefix="jaxcnn-kill-resume-"))
    files = faults.write_synthetic_splits(root / "data", n_train=ns.train_examples, n_dev=200, n_test=200)
    extra = ["--checkpoint-every", str(ns.checkpoint_every), "--devices", str(ns.devices), "--tensorboard"]
    batch, per_dispatch = 16, 2  # as in `faults.train_args`
    steps = -(-ns.train_examples // batch)
    plan = faults.random_plan(ns.kills, ns.epochs, ns.seed, steps_per_epoch=steps,
                                   steps_per_dispatch=per_dispatch, checkpoint_every=ns.checkpoint_every)
    print(f"root: {root}\nplan: {', '.join(map(str, plan))}", flush=True)
    start = time.monotonic()
    report = faults.kill_resume(root, plan, epochs=ns.epochs, extra=extra, files=files)
    print(report.table())
    lost = [r.seconds_lost for r in report.records if r.killed]
    print(f"\nkills survived: {report.kills_survived} of {len(plan)}; seconds lost per kill: median "
          f"{sorted(lost)[len(lost) // 2]:.2f}, max {max(lost):.2f} (a process start-up included when nothing was "
          f"checkpointed since it started); reference run {report.reference_seconds:.1f} s, killed run "
          f"{report.killed_run_seconds:.1f} s; total {time.monotonic() - start:.1f} s")
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
