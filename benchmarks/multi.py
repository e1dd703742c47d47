"""Benchmark: K CV folds as one program against K sequential runs of the normal trainer.

The program walks its members as `Program` does by default (vmapped, or looped on one CPU device: see
`jaxcnn.train.program.member_chunk`); `chunk=` forces a way.

`benchmark_cv_vmapped(data_dir)` builds MR's 10 folds (CNN-rand, Kim's recipe) as one `Program` and fold 0
as a program of one member (what `jaxcnn train --fold 0` runs) on the same data. Folds differ by at most one example, so every sequential run executes the same
steps at the same shapes: K sequential runs cost K times one run's steps. After both have compiled, it times one
block of `steps` steps of the program (all K members) against K blocks of the single run, interleaved `repeats`
times; the ratio is the median of the paired ratios (the machine is shared: absolute times drift, paired ratios
hold). ratio > 1 means the one program trains more examples per second than the sequential runs.

It also reports the compile time of each (a sequential CV compiles K times, the program once) and XLA's memory
analysis of one compiled block for 1 and K members. `python scripts/benchmark.py` runs it as "multi".

`benchmark_cv_processes(data_dir)` is the end-to-end view ("multi_processes"): `jaxcnn cv` as one process against
K `jaxcnn train --fold k` processes, start-up, compile, evaluation and checkpoints included.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import jax

from jaxcnn import configs, tasks
from jaxcnn.experiments.programs import protocol_members
from jaxcnn.train.parallel import put
from jaxcnn.train.program import Program


def _memory(compiled) -> dict[str, int]:
    m = compiled.memory_analysis()
    return {k: int(getattr(m, k)) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                            "temp_size_in_bytes", "alias_size_in_bytes")}


def _timed(fn) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def benchmark_cv_vmapped(data_dir: str | os.PathLike, *, dataset: str = "mr", variant: str = "rand",
                         folds: int = 10, steps: int = 20, repeats: int = 5, devices: int = 1,
                         memory_of_one: bool = True, chunk: int | None | str = "auto", **overrides: Any
                         ) -> dict[str, Any]:
    """Paired timing of `folds` CV folds as one program vs as sequential runs (see the module docstring).

    Args:
      memory_of_one: also compile a 1-member program, for the memory of one member (`memory["1"]`).
      overrides: config fields to change from Kim's recipe (e.g. a smaller model for a smoke test).

    Returns:
      {"ratio": median of (K sequential blocks' seconds / the program's block seconds), "ratios": all pairs,
       "vmapped_examples_per_second", "sequential_examples_per_second" (medians), "compile_seconds":
       {"vmapped", "sequential_per_run"}, "memory": {"K": ..., "1": ...} (XLA's sizes of one compiled block of
       the K-member and the 1-member program, bytes), ...}.
    """
    cfg = configs.kim2014(dataset, variant).replace(data_dir=str(data_dir), folds=folds, devices=devices,
                                                    steps_per_dispatch=steps, progress=False, tensorboard=False,
                                                    plots=False, **overrides)
    task = tasks.get("text")
    examples = task.load(cfg)
    members = protocol_members(cfg, examples, [cfg.train.seed])
    k = len(members)
    data = task.prepare(cfg, examples, [m.rows() for m in members], [m.seed for m in members])
    program = Program(cfg, task, data, members, chunk=chunk)
    # A sequential run: the first fold as a program of its own, on the same data.
    run = Program(cfg, task, data, members[:1], chunk=chunk)
    vm_block = put(program.epoch_blocks(1, [True] * k)[0], program.index_sharding)
    seq_block = put(run.epoch_blocks(1, [True])[0], run.index_sharding)
    # Compiled ahead of time: the compile is timed alone, and the same executables are timed and measured.
    start = time.perf_counter()
    vm_exe = program.train_fn.lower(program.state, {}, vm_block, program.ctx).compile()
    compile_vm = time.perf_counter() - start
    start = time.perf_counter()
    seq_exe = run.train_fn.lower(run.state, {}, seq_block, run.ctx).compile()
    compile_seq = time.perf_counter() - start
    memory = {"K": _memory(vm_exe)}
    if memory_of_one:
        memory["1"] = _memory(seq_exe)

    def vmapped():
        program.state, sums, _ = vm_exe(program.state, {}, vm_block, program.ctx)
        return sums

    def one_run():
        run.state, sums, _ = seq_exe(run.state, {}, seq_block, run.ctx)
        return sums

    _timed(vmapped), _timed(one_run)  # warm-up: first-touch allocations
    pairs = []
    for _ in range(repeats):
        t_vm = _timed(vmapped)
        t_seq = sum(_timed(one_run) for _ in range(k))
        pairs.append((t_vm, t_seq))
    examples = k * steps * cfg.train.batch_size
    return {"dataset": dataset, "variant": variant, "folds": k, "steps_per_block": steps, "repeats": repeats,
            "devices": devices, "platform": jax.devices()[0].platform, "chunk": program.chunk,
            "ratio": statistics.median(s / v for v, s in pairs), "ratios": [s / v for v, s in pairs],
            "vmapped_examples_per_second": examples / statistics.median(v for v, _ in pairs),
            "sequential_examples_per_second": examples / statistics.median(s for _, s in pairs),
            "compile_seconds": {"vmapped": compile_vm, "sequential_per_run": compile_seq}, "memory": memory}


def _cli(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jaxcnn.cli", "-q", *args], check=True, env=env, capture_output=True,
                   text=True, timeout=7200)
    return time.perf_counter() - start


def benchmark_cv_processes(data_dir: str | os.PathLike, *, dataset: str = "mr", variant: str = "rand",
                           folds: int = 10, epochs: int = 1, extra: Sequence[str] = ()) -> dict[str, Any]:
    """End to end, as a user runs them: `jaxcnn cv --folds K` (one process, one program) against K sequential
    `jaxcnn train --fold k` processes, the same epochs, evaluation and checkpoints on both sides (plots and
    TensorBoard off on both; `extra` flags go to both). Each side's wall time includes what a run costs besides its
    steps: starting Python and JAX, loading and encoding the data, compiling, evaluating each epoch, saving
    checkpoints.

    Returns:
      {"ratio": K runs' wall seconds / the program's, "train_ratio": the same over training seconds only (each
       side's own count of time inside its epochs' training blocks), "wall_seconds": {"program", "sequential"},
       "per_run_seconds": [...], "test_accuracy": {"program": [...], "sequential": [...]} per fold, ...}.
      The folds' models are not identical: the program fits one vocabulary on all its members' training rows
      (Kim's, `jaxcnn.tasks.TextTask.prepare`), a lone run on its own, so the random tables differ; the work per step
      is the same up to the program's slightly larger table.
    """
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    common = ["--dataset", dataset, "--variant", variant, "--folds", str(folds), "--epochs", str(epochs),
              "--data-dir", str(data_dir), "--devices", "1", "--no-progress", "--no-plots", "--no-tensorboard", *extra]
    with tempfile.TemporaryDirectory(prefix="jaxcnn-bench-cv-") as tmp:
        root = pathlib.Path(tmp)
        program_wall = _cli(["cv", *common, "--seeds", "1", "--workdir", str(root / "cv")], env)
        per_run = [_cli(["train", *common, "--fold", str(k), "--workdir", str(root / f"fold{k}")], env)
                   for k in range(folds)]
        program = json.loads((root / "cv" / "summary.json").read_text())
        members = program["members"]
        runs = [json.loads((root / f"fold{k}" / "summary.json").read_text()) for k in range(folds)]
    program_train = program["train_seconds"]
    sequential_train = sum(r["train_examples"] * epochs / r["train_examples_per_second"] for r in runs)
    return {"dataset": dataset, "variant": variant, "folds": folds, "epochs": epochs,
            "ratio": sum(per_run) / program_wall, "train_ratio": sequential_train / program_train,
            "wall_seconds": {"program": program_wall, "sequential": sum(per_run)},
            "train_seconds": {"program": program_train, "sequential": sequential_train},
            "per_run_seconds": per_run,
            "test_accuracy": {"program": [m["test_accuracy"] for m in members],
                              "sequential": [r["test_accuracy"] for r in runs]}}
