"""Faults met by the real `jaxcnn train`: corrupt checkpoints, a second run on a locked workdir, a full disk
during a save, a NaN mid-training. Each ends with a clear one-line message and, where training can go on, a
resumed run equal to an uninterrupted one (bit for bit)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import time

import jax
import numpy as np
import pytest

from jaxcnn import cli
from tools import faults as reliability
from jaxcnn.predict import SavedProgram, load_program
from jaxcnn.train.writers import read_metrics
from tests.corruptions import delete_array_file, empty_folder, garble_metadata, truncate_array_file
from tests.reliability.conftest import EPOCHS


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def latest(workdir: pathlib.Path) -> SavedProgram:
    return load_program(workdir, checkpoint="latest")


# -- corrupt checkpoints ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_checkpoints(tiny) -> pathlib.Path:
    """A workdir after epoch 2 of the tiny run, holding complete checkpoints of epochs 1 and 2."""
    workdir = tiny.root / "two-checkpoints"
    assert tiny.run(workdir, epochs=1).returncode == 0
    shutil.copytree(workdir / "checkpoints" / "1", tiny.root / "step-1")
    assert tiny.run(workdir, epochs=2).returncode == 0
    if not (workdir / "checkpoints" / "1").exists():  # retention keeps the latest and the best only
        shutil.copytree(tiny.root / "step-1", workdir / "checkpoints" / "1")
    return workdir


@pytest.mark.parametrize("corrupt", [
    truncate_array_file,
    pytest.param(delete_array_file, marks=pytest.mark.slow),
    pytest.param(garble_metadata, marks=pytest.mark.slow),
    pytest.param(empty_folder, marks=pytest.mark.slow),
], ids=lambda f: f.__name__)
def test_corrupt_latest_checkpoint_falls_back_and_the_run_ends_as_an_uninterrupted_one(
        tiny, reference, two_checkpoints, tmp_path, corrupt):
    workdir = tmp_path / "w"
    shutil.copytree(two_checkpoints, workdir)
    corrupt(workdir / "checkpoints" / "2")
    proc = tiny.run(workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    about = [line for line in lines(proc.stderr) if "checkpoints/2" in line]
    assert len(about) == 1, proc.stderr
    assert re.fullmatch(rf"jaxcnn train: warning: skipped checkpoint {workdir}/checkpoints/2 \(\w+: .+\); "
                        r"using step 1; moved to 2\.corrupt", about[0]), about[0]
    assert "resumed from" in proc.stderr and (workdir / "checkpoints" / "2.corrupt").is_dir()
    assert reliability.compare_runs(reference, workdir) == []


# -- two runs on one workdir --------------------------------------------------------------------------------------


def test_a_second_run_on_a_locked_workdir_is_refused_and_a_killed_holder_does_not_block(tiny, reference, tmp_path,
                                                                                         capsys):
    workdir = tmp_path / "w"
    first = subprocess.Popen(reliability.jaxcnn_command(tiny.args(workdir, epochs=10_000)), env=tiny.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while f'"pid": {first.pid}' not in _read(workdir / ".lock"):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        assert cli.main(tiny.args(workdir)) == 2
        err = lines(capsys.readouterr().err)
        assert len(err) == 1 and re.fullmatch(
            rf"jaxcnn train: error: {workdir} is in use by pid {first.pid} on \S+ \(started [^)]+\); wait for it to "
            r"finish or use another --workdir", err[0]), err
    finally:
        first.kill()
        first.wait()
    proc = tiny.run(workdir)  # the dead holder's lock file is left behind and does not block
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert reliability.compare_runs(reference, workdir) == []


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


# -- disk full ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_disk_full_during_a_save_stops_with_one_line_and_keeps_the_previous_checkpoint(tiny, reference,
                                                                                      two_checkpoints, tmp_path):
    workdir = tmp_path / "w"
    shutil.copytree(two_checkpoints, workdir)
    # Any write past 4 KiB fails, as writes to a full disk fail: the config, the lock and three epochs of metrics
    # still fit, a checkpoint's array files do not.
    proc = tiny.run(workdir, max_file_bytes=4096)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in lines(proc.stderr) if "error" in line or "Error" in line or "warning" in line]
    assert errors == [f"jaxcnn train: error: saving checkpoint {workdir}/checkpoints/3 failed: File too large; "
                      f"step 2 is the last complete checkpoint"], proc.stderr
    assert latest(workdir).epoch == 2
    assert sorted(os.listdir(workdir / "checkpoints")) == ["1", "2"]  # the half-written step 3 is gone: space back
    proc = tiny.run(workdir)  # with room again, the run resumes from epoch 2 and ends as if nothing happened
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert reliability.compare_runs(reference, workdir) == []


# -- NaN mid-training ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_nan_mid_training_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tiny, reference, tmp_path):
    workdir = tmp_path / "w"
    per_epoch = -(-160 // 16)  # the tiny run: 160 examples, batches of 16, 2 steps per dispatch
    step = 2 * per_epoch + 4  # inside epoch 3, at a block boundary
    proc = tiny.run(workdir, fault=f"nan:{step}")
    assert proc.returncode == 3, proc.stderr[-3000:]
    err = [line for line in lines(proc.stderr) if line.startswith("jaxcnn")]
    assert err == [f"jaxcnn train: error: non-finite loss or gradient at step {step} (epoch 3); training stopped, "
                   f"the last good checkpoint (epoch 2) is kept in {workdir}/checkpoints"], proc.stderr
    kept = latest(workdir)
    assert kept.epoch == 2
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(jax.device_get(kept.state.params)))
    assert sorted({r["epoch"] for r in read_metrics(workdir / "metrics.jsonl")}) == [1, 2]
    proc = tiny.run(workdir)  # the fault was one-off: the rerun ends as an uninterrupted run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert reliability.compare_runs(reference, workdir) == []
    assert json.loads((workdir / "summary.json").read_text())["epochs"] == EPOCHS
