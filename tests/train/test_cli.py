"""The command line end to end: train -> evaluate -> predict, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jaxcnn import cli
from tests.train.helpers import write_splits, write_word2vec_text

# One filter width (2: "great" below is still shorter than it): each run compiles a smaller program.
TINY = ["--embed-dim", "16", "--maps", "8", "--windows", "2", "--batch-size", "16", "--eval-batch-size", "64",
        "--no-progress", "--no-tensorboard", "--steps-per-dispatch", "8", "--devices", "1"]


@pytest.fixture
def files(tmp_path):
    f = write_splits(tmp_path / "data")
    return ["--train-file", f["train_file"], "--dev-file", f["dev_file"], "--test-file", f["test_file"]]


def test_train_evaluate_predict(tmp_path, files, capsys):
    workdir = str(tmp_path / "w")
    assert cli.main(["train", "--workdir", workdir, *files, *TINY, "--epochs", "3", "--optimizer", "adam",
                     "--lr", "0.01"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["epochs"] == 3 and 0.0 <= line["test_accuracy"] <= 1.0
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    for key in ("dataset", "variant", "seed", "fold", "epochs", "best_epoch", "dev_accuracy", "test_accuracy",
                "train_examples", "wall_seconds", "train_examples_per_second"):
        assert key in summary, key
    assert (tmp_path / "w" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "w" / "confusion.png").stat().st_size > 1000

    assert cli.main(["evaluate", "--workdir", workdir, "--split", "test"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert result["examples"] == summary["test_examples"]

    assert cli.main(["evaluate", "--workdir", workdir, "--file", files[5]]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(summary["test_accuracy"])

    # A sentence shorter than the widest filter, an empty one, and unknown words all predict.
    assert cli.main(["predict", "--workdir", workdir, "great", "", "zzz qqq", "the movie was awful"]) == 0
    records = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == ["great", "", "zzz qqq", "the movie was awful"]
    for r in records:
        assert set(r["probabilities"]) == {"0", "1"} or len(r["probabilities"]) == 2
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["label"] in r["probabilities"]


def test_predict_streams_a_file_and_the_python_api(tmp_path, files, capsys):
    import jaxcnn

    workdir = str(tmp_path / "w")
    assert cli.main(["train", "--workdir", workdir, *files, *TINY, "--epochs", "1"]) == 0
    capsys.readouterr()
    text = tmp_path / "in.txt"
    text.write_text("".join(f"sentence number {i}\n" for i in range(700)), encoding="utf-8")
    assert cli.main(["predict", "--workdir", workdir, "--file", str(text), "--batch-size", "256"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 700 and json.loads(out[699])["text"] == "sentence number 699"
    preds = jaxcnn.load(workdir).predict(["a lovely film", "a"])
    assert len(preds) == 2 and preds[0]["label"] in preds[0]["probabilities"]


@pytest.mark.parametrize("variant", ["static", "non-static", "multichannel"])
def test_pretrained_variants_train_and_predict(tmp_path, files, capsys, variant):
    vectors = write_word2vec_text(tmp_path / "vec.txt", dim=16)
    workdir = str(tmp_path / "w")
    assert cli.main(["train", "--workdir", workdir, *files, *TINY, "--epochs", "1", "--variant", variant,
                     "--embeddings", str(vectors)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["variant"] == variant
    assert cli.main(["predict", "--workdir", workdir, "great", ""]) == 0
    assert [json.loads(x)["text"] for x in capsys.readouterr().out.splitlines()] == ["great", ""]


def run_cli(*args, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "jaxcnn.cli", *args], capture_output=True, text=True, env=e,
                          timeout=300)


@pytest.mark.parametrize("args, expected", [
    (["--dataset", "imdb"], "--dataset: unknown dataset 'imdb'"),
    (["--variant", "sparkly"], "--variant: invalid choice: 'sparkly'"),
    (["--variant", "static"], "--embeddings"),
    (["--epochs", "zero"], "--epochs: expected int"),
    (["--fold", "12"], "--fold: must be in [0, 10)"),
])
def test_bad_flags_are_one_line_errors(tmp_path, args, expected):
    p = run_cli("train", "--workdir", str(tmp_path / "w"), "--dataset", "trec", *args)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert expected in lines[0]


def test_missing_data_folder_is_one_line_error(tmp_path):
    p = run_cli("train", "--workdir", str(tmp_path / "w"), "--dataset", "trec", "--data-dir",
                str(tmp_path / "nowhere"))
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "nowhere" in p.stderr


def test_workdir_with_another_config_is_refused(tmp_path, files, capsys):
    workdir = str(tmp_path / "w")
    assert cli.main(["train", "--workdir", workdir, *files, *TINY, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--workdir", workdir, *files, *TINY, "--epochs", "1", "--maps", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "maps" in err[0]


def test_evaluate_without_training_is_one_line_error(tmp_path, capsys):
    assert cli.main(["evaluate", "--workdir", str(tmp_path / "empty")]) == 2
    assert "train a model there first" in capsys.readouterr().err
