"""A tiny run of the real `jaxcnn train`, in subprocesses that share one persistent compilation cache (each run
then starts in about 4 s instead of compiling for 8)."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
from collections.abc import Sequence

import pytest

from tools import faults as reliability

EPOCHS = 3


@dataclasses.dataclass
class TinyRun:
    """Synthetic data, a compilation cache and the command line of one small run.

    Attributes:
      root: a session folder. files: train/dev/test files. env: the subprocesses' environment.
    """

    root: pathlib.Path
    files: dict[str, str]
    env: dict[str, str]

    def args(self, workdir: pathlib.Path, epochs: int = EPOCHS, extra: Sequence[str] = ()) -> list[str]:
        return reliability.train_args(workdir, self.files, epochs, extra)

    def run(self, workdir: pathlib.Path, epochs: int = EPOCHS, extra: Sequence[str] = (), *, fault: str | None = None,
            env: dict[str, str] | None = None, max_file_bytes: int | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """`jaxcnn train` to the end (or `python -m tools.faults` with `fault` armed)."""
        run_env = dict(env or self.env)
        if fault is not None:
            run_env[reliability.FAULT_ENV] = fault
        cmd = reliability.jaxcnn_command(self.args(workdir, epochs, extra), faults=fault is not None,
                                         max_file_bytes=max_file_bytes)
        return subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyRun:
    root = tmp_path_factory.mktemp("tiny-run")
    files = reliability.write_synthetic_splits(root / "data")
    return TinyRun(root, files, reliability.subprocess_env(root / "jax-cache"))


@pytest.fixture(scope="session")
def reference(tiny) -> pathlib.Path:
    """The tiny run trained for EPOCHS epochs without interruption."""
    workdir = tiny.root / "reference"
    proc = tiny.run(workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir
