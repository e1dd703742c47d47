"""The first run on a fresh machine, and the ways a new user or an adversary crashed, wedged or mixed runs
(issue 19): each test here failed on the code before it, and each is a row of docs/reliability.md."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import subprocess
import sys
import time

import matplotlib.image
import numpy as np
import pytest

from jaxcnn import cli
from jaxcnn.data import registry
from jaxcnn.data.encode import DEFAULT_MAX_LEN, TextEncoder
from jaxcnn.errors import ConfigError, WorkdirError
from jaxcnn.predict import ENSEMBLE_FILE, read_ensemble
from jaxcnn.train import metrics as metrics_lib
from jaxcnn.train.plots import plot_confusion_matrix

TINY = ["--embed-dim", "8", "--maps", "4", "--windows", "2", "--batch-size", "4", "--devices", "1", "--no-progress",
        "--no-tensorboard", "--epochs", "1"]
GOOD = "0 a dull film\n1 a good film\n0 bad\n1 great\n0 dull and bad\n1 good and great\n"
REPO = pathlib.Path(__file__).resolve().parents[2]


def write(path: pathlib.Path, content: str | bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def files(folder: pathlib.Path, train: str = GOOD) -> list[str]:
    return ["--train-file", str(write(folder / "train.txt", train)),
            "--dev-file", str(write(folder / "dev.txt", "0 dull\n1 good\n")),
            "--test-file", str(write(folder / "test.txt", "1 fine\n0 poor\n"))]


def train(capsys, workdir: pathlib.Path, *argv: str) -> tuple[int, list[str]]:
    code = cli.main(["train", "--workdir", str(workdir), *TINY, *argv])
    return code, capsys.readouterr().err.strip().splitlines()


def classes_file(path: pathlib.Path, classes: int, per_class: int = 6) -> pathlib.Path:
    rng = np.random.default_rng(0)
    lines = [f"{c} w{c} x{int(rng.integers(40))} y{int(rng.integers(40))}\n"
             for c in range(classes) for _ in range(per_class)]
    return write(path, "".join(lines))


# -- the first run ---------------------------------------------------------------------------------------------------


def fresh_env(tmp_path: pathlib.Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JAXCNN_DATA_DIR"}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}


def test_a_set_found_nowhere_fails_offline_in_one_line_fast_and_leaves_the_workdir_empty(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "train", "--dataset", "sst2", "--workdir",
                           str(tmp_path / "w")], env=fresh_env(tmp_path), capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert re.search(r"sst2: .*put .*stsa\.binary\.train.* --data-dir", lines[0]), lines[0]
    assert "data_dir=" not in lines[0]
    assert time.perf_counter() - start < 10  # the process with its imports; the lookup itself: tests/data
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


@pytest.mark.slow
# MR's epoch of Kim's full model takes minutes on 2 cores: -m exhaustive (TREC runs in .ci/run; both bundled files
# are also read in the default tests).
@pytest.mark.parametrize("dataset", [pytest.param("mr", marks=pytest.mark.exhaustive), "trec"])
def test_the_readme_first_command_trains_offline_from_the_bundled_copy(tmp_path, dataset):
    """README: `jaxcnn train --workdir runs/mr` on a machine with no data folder and no network (one epoch here)."""
    proc = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "train", "--dataset", dataset, "--epochs", "1",
                           "--workdir", str(tmp_path / "w")], env=fresh_env(tmp_path), capture_output=True,
                          text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"data: {dataset} from bundled with jaxcnn"), lines[0]
    assert json.loads((tmp_path / "w" / "summary.json").read_text())["test_accuracy"] > 0.5


def trec_folder(folder: pathlib.Path, data_dir: pathlib.Path, train: int, test: int) -> pathlib.Path:
    for name, n in (("TREC.train.all", train), ("TREC.test.all", test)):
        lines = (data_dir / "kim" / name).read_bytes().splitlines(keepends=True)[:n]
        write(folder / "kim" / name, b"".join(lines))
    return folder


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_evaluate_reads_the_data_from_the_folder_it_is_given(tmp_path, capsys, data_dir):
    a = trec_folder(tmp_path / "a", data_dir, 600, 200)
    b = trec_folder(tmp_path / "b", data_dir, 600, 120)
    code, err = train(capsys, tmp_path / "w", "--dataset", "trec", "--data-dir", str(a), "--batch-size", "50",
                      "--no-plots")
    assert code == 0, err
    for folder, examples in ((None, 200), (b, 120)):
        extra = [] if folder is None else ["--data-dir", str(folder)]
        assert cli.main(["evaluate", "--workdir", str(tmp_path / "w"), *extra]) == 0
        assert json.loads(capsys.readouterr().out)["examples"] == examples


def help_text(command: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "jaxcnn.cli", command, "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "10000"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "cv", "search"])
def test_help_texts_are_whole_sentences_and_name_the_choices(command):
    text = help_text(command)
    options = re.findall(r"^  (--?[\w-]+.*?)(?:  +|\n {20,})(.*)$", text, flags=re.M)
    for flag, helptext in options:
        assert helptext and not re.search(r"(\be\.g|\(|,|:| [a-z]+ \()$", helptext.split(" (default")[0]), \
            (flag, helptext)
    if command == "train":
        dataset = next(h for f, h in options if f.startswith("--dataset"))
        for name in registry.DATASETS:
            assert re.search(rf"\b{name}\b", dataset), (name, dataset)
        assert "word2vec" in next(h for f, h in options if f.startswith("--embeddings-format"))
    if command == "evaluate":
        assert any(f.startswith("--data-dir") for f, _ in options)


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_without_a_terminal_every_line_stands_alone_and_the_data_line_is_bounded(tmp_path):
    train_file = classes_file(tmp_path / "train.txt", 200, per_class=3)
    proc = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "train", "--workdir", str(tmp_path / "w"),
                           "--train-file", str(train_file), *[a for a in TINY if a != "--no-progress"],
                           "--no-plots"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stderr.splitlines()
    assert any(line.startswith("epoch 1: train loss") for line in lines), lines
    assert not any("step/s" in line or "\r" in line for line in lines)  # no bar frames in a log file
    data = next(line for line in lines if line.startswith("data: "))
    assert len(data) < 400 and "classes 200" in data


def test_curves_show_whole_epochs(tmp_path, monkeypatch):
    from jaxcnn.train import plots

    figures = []
    monkeypatch.setattr(plots, "_save_png", lambda fig, path: figures.append(fig))
    for epochs in (1, 2, 60):
        records = [{"epoch": e, "split": s, "accuracy": 0.5, "loss": 1.0}
                   for e in range(1, epochs + 1) for s in ("train", "dev", "test")]
        plots.plot_training_curves(records, tmp_path / "curves.png")
        for ax in figures[-1].axes:
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), (epochs, ticks)


# -- crashes and unbounded memory ------------------------------------------------------------------------------------


@pytest.mark.parametrize("classes", [200, 1000])
def test_many_classes_keep_records_and_plots_bounded(tmp_path, classes):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 3, (classes, classes))
    cm[np.diag_indices(classes)] += 5
    out = metrics_lib.summarize({"loss_sum": 1.0, "count": float(cm.sum()), "confusion": cm},
                                [f"class {i}" for i in range(classes)])
    shown = metrics_lib.MAX_CLASSES_IN_FULL
    assert np.asarray(out["confusion"]).shape == (shown, shown) and len(out["precision"]) == shown
    assert len(out["classes_shown"]) == shown and len(json.dumps(out)) < 100_000
    assert out["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())  # still over every class
    plot_confusion_matrix(np.asarray(out["confusion"]), out["classes_shown"], tmp_path / "c.png",
                          title="test set at epoch 1 (best dev)", total_classes=classes)
    height, width = matplotlib.image.imread(tmp_path / "c.png").shape[:2]
    assert max(height, width) <= 17 * 100  # inches at the PNG's 100 dpi, however many classes


def test_most_confused_classes_are_the_ones_shown():
    cm = np.eye(60, dtype=np.int64) * 10
    cm[7, 3] = cm[3, 7] = 9  # classes 3 and 7 are confused with each other; nothing else is
    shown = metrics_lib.most_confused(cm, k=2)
    assert shown.tolist() == [3, 7]


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_a_run_with_200_classes_writes_small_files(tmp_path, capsys):
    code, err = train(capsys, tmp_path / "w", "--train-file", str(classes_file(tmp_path / "train.txt", 200)))
    assert code == 0, err
    for name in ("summary.json", "metrics.jsonl"):
        assert (tmp_path / "w" / name).stat().st_size < 200_000, name
    assert (tmp_path / "w" / "confusion.png").stat().st_size < 2_000_000


def test_a_runaway_line_does_not_set_the_row_length(caplog):
    texts = ["a b c", "d e", " ".join(["x"] * 500_000)]
    encoder = TextEncoder.fit(texts, "whitespace", pad_width=0)
    assert encoder.length == DEFAULT_MAX_LEN
    assert "1 training sentences are longer than 1000 tokens (the longest: 500000)" in caplog.text
    assert TextEncoder.fit(texts, "whitespace", pad_width=0, cap=20_000).length == 20_000  # --max-len still sets any length


def test_memory_is_checked_before_allocating(tmp_path, capsys, monkeypatch):
    from jaxcnn.tasks import text

    monkeypatch.setattr(text, "available_memory", lambda: 1 << 20)
    long = "0 " + " ".join(["dull"] * 20_000) + "\n"
    code, err = train(capsys, tmp_path / "w", *files(tmp_path, train=GOOD + long), "--max-len", "20000")
    assert code == 2 and len(err) == 1, err
    assert re.search(r"--max-len: 11 sentences of 20002 ids need about \d+\.\d MiB, more than the 1\.0 MiB available", err[0])


def test_a_batch_larger_than_the_data_holds_the_data(tmp_path, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="jaxcnn"):
        code, err = train(capsys, tmp_path / "w", *files(tmp_path), "--batch-size", "100000")
    assert code == 0, err
    assert "--batch-size 100000 is more than the 6 training examples: one batch of 6 per epoch" in caplog.text


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_a_workdir_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, where):
    write(tmp_path / "f", "x")
    workdir = tmp_path / "f" if where == "file" else tmp_path / "f" / "w"
    code, err = train(capsys, workdir, *files(tmp_path))
    assert code == 2 and len(err) == 1 and str(workdir) in err[0], err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("trained")
    assert cli.main(["train", "--workdir", str(root / "w"), *TINY, "--no-plots", *files(root)]) == 0
    return root / "w"


@pytest.mark.parametrize("content, message", [
    (pathlib.Path(sys.executable).read_bytes()[:4096], r"(binary|NUL)"),
])
@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_predict_refuses_binary_input_in_one_line(tmp_path, capsys, trained, content, message):
    path = write(tmp_path / "in.bin", content)
    assert cli.main(["predict", "--workdir", str(trained), "--file", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and re.search(message, err[0]), err


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_predict_reads_files_as_training_does_and_writes_utf8_json(tmp_path, trained, encoding):
    path = write(tmp_path / "in.txt", "a good film\ncafé crème\n".encode(encoding))
    env = {**os.environ, "PYTHONIOENCODING": "ascii:strict", "LC_ALL": "C"}
    proc = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "predict", "--workdir", str(trained), "--file",
                           str(path)], capture_output=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    records = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    assert [r["text"] for r in records] == ["a good film", "café crème"]


@pytest.mark.parametrize("content", [
    "", "[]", '{"chosen": 3}', '{"chosen": "mean"}', '{"chosen": "mean", "programs": {"mean": "abc"}}',
    '{"chosen": "mean", "programs": {"mean": []}}', '{"chosen": "mean", "programs": {"mean": [3]}}',
    '{"chosen": "mean", "programs": {"mean": ["../../other/run"]}}', '{"chosen": "mean", "programs": {"mean": ["."]}}',
    '{"chosen": "mean", "programs": {"mean": ["/etc"]}}', '{"chosen": "mean", "combiners": 5, '
    '"programs": {"mean": ["a"]}}'])
def test_a_crafted_ensemble_description_is_one_line_and_never_leaves_the_workdir(tmp_path, content):
    write(tmp_path / ENSEMBLE_FILE, content)
    with pytest.raises(WorkdirError) as err:
        read_ensemble(tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path / ENSEMBLE_FILE) in str(err.value)


# -- runs that mix or wedge ------------------------------------------------------------------------------------------


def test_a_failed_run_does_not_pin_its_config(tmp_path, capsys):
    workdir = tmp_path / "w"
    code, err = train(capsys, workdir, *files(tmp_path / "bad", train=""))
    assert code == 2 and len(err) == 1, err
    code, err = train(capsys, workdir, *files(tmp_path / "good"))
    assert code == 0, err


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_a_checkpoint_of_another_config_is_never_resumed(tmp_path, capsys):
    workdir = tmp_path / "w"
    argv = files(tmp_path)
    assert train(capsys, workdir, *argv)[0] == 0
    (workdir / "config.json").unlink()  # as an earlier error message suggested
    code, err = train(capsys, workdir, *argv, "--lr", "0.5", "--epochs", "2")
    assert code == 2 and len(err) == 1 and "lr" in err[0], err
    code, err = train(capsys, workdir, *argv, "--maps", "20", "--epochs", "2")
    assert code == 2 and len(err) == 1, err
    code, err = train(capsys, workdir, *argv, "--epochs", "2")  # the original command still resumes
    assert code == 0, err
    assert json.loads((workdir / "summary.json").read_text())["epochs"] == 2


def test_one_class_training_data_is_refused(tmp_path, capsys):
    code, err = train(capsys, tmp_path / "w", *files(tmp_path, train="1 good\n1 fine\n1 great\n"))
    assert code == 2 and len(err) == 1 and re.search(r"holds one class .*train\.txt", err[0]), err


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_flags_are_refused(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        train(capsys, tmp_path / "w", *files(tmp_path), f"--lr={value}")
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err == [f"jaxcnn train: error: argument --lr: expected a finite number, got '{value}'"]


def flags() -> set[str]:
    out = {"--quiet"}  # before the command: jaxcnn --quiet train ...
    for command in ("train", "evaluate", "predict", "explain", "filters", "cv", "search", "ensemble", "reproduce", "bench"):
        proc = subprocess.run([sys.executable, "-m", "jaxcnn.cli", command, "--help"], capture_output=True,
                              text=True, timeout=120)
        out |= set(re.findall(r"--[a-z][\w-]*", proc.stdout))
    return out


@pytest.mark.slow  # minutes, not seconds: in .ci/run's slow part
def test_messages_name_only_flags_that_exist():
    known = flags()
    named = set()
    for path in (REPO / "jaxcnn").rglob("*.py"):
        for literal in re.findall(r"(?:f?\"[^\"\n]*\"|f?'[^'\n]*')", path.read_text(encoding="utf-8")):
            named |= {(flag, path.name) for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*[a-z]", literal)}
    unknown = sorted((f, p) for f, p in named if f not in known and not f.startswith("--xla"))
    assert not unknown, unknown
