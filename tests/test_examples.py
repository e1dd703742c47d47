"""examples/: a user's own Flax model trains, checkpoints, resumes and predicts through jaxcnn's engine."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


# A narrower model than the example's default (64 maps, 64-d embeddings): the same engine, checkpoints, resume
# and predictor in a quarter of the time, and still well above chance (> 0.5 on TREC's 6 classes) in 2 epochs.
SMALL = ["--features", "16", "--embed-dim", "32"]


def run_example(workdir: pathlib.Path, epochs: int, data_dir: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAXCNN_DATA_DIR=str(data_dir))
    return subprocess.run([sys.executable, str(REPO / "examples" / "custom_model.py"), "--workdir", str(workdir),
                           "--epochs", str(epochs), *SMALL], capture_output=True, text=True, env=env, timeout=900)


def test_custom_model_trains_resumes_and_predicts(tmp_path, data_dir):
    workdir = tmp_path / "w"
    first = run_example(workdir, 1, data_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_example(workdir, 2, data_dir)  # the same command with more epochs resumes
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr and "at epoch 1" in second.stderr
    lines = [json.loads(line) for line in second.stdout.splitlines()]
    assert lines[0]["epochs"] == 2 and lines[0]["test_accuracy"] > 0.5
    assert [r["text"] for r in lines[1:]] == ["How far is it from Denver to Aspen ?", "Who wrote Hamlet ?"]
    assert all(r["label"] in ("DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM") for r in lines[1:])
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["task"] == "trec-dilated" and summary["epochs"] == 2
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["epoch"]) for r in records] == [(k, e) for e in (1, 2) for k in ("train", "dev", "test")]
    params = json.loads((workdir / "program.json").read_text())
    assert params["task"] == "trec-dilated"
    # The command line knows only its registered tasks: it says how to load this one.
    out = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "predict", "--workdir", str(workdir), "a question"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "jaxcnn.load(" in out.stderr and len(out.stderr.strip().splitlines()) == 1
