"""One config format for every workdir: `--config WORKDIR/config.json` starts a new run from any workdir's saved
config (train, cv, search, image), and flags given beside it override it."""

from __future__ import annotations

import json

import pytest

from jaxcnn import cli
from jaxcnn.configs import Config
from tests.multi.common import write_pool_file
from tests.train.helpers import write_splits

# One filter width: what these tests prove is about configs, and each run compiles a smaller program.
TINY = ["--embed-dim", "16", "--maps", "8", "--windows", "2", "--batch-size", "16", "--eval-batch-size", "64",
        "--no-progress", "--no-tensorboard", "--no-plots", "--steps-per-dispatch", "8", "--devices", "1",
        "--optimizer", "adam", "--lr", "0.01"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    f = write_splits(tmp_path_factory.mktemp("data"))
    return ["--train-file", f["train_file"], "--dev-file", f["dev_file"], "--test-file", f["test_file"]]


def saved(workdir) -> dict:
    return json.loads((workdir / "config.json").read_text())


def summary(workdir) -> dict:
    return json.loads((workdir / "summary.json").read_text())


def test_a_train_workdirs_config_trains_the_same_run_again(tmp_path, files, capsys):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert cli.main(["train", "--workdir", str(a), *files, *TINY, "--epochs", "2"]) == 0
    Config.from_dict(saved(a))  # the saved file is a config, section by section
    assert cli.main(["train", "--config", str(a / "config.json"), "--workdir", str(b)]) == 0
    assert saved(b) == saved(a)
    assert summary(b)["test_accuracy"] == summary(a)["test_accuracy"]
    assert summary(b)["dev_accuracy"] == summary(a)["dev_accuracy"]
    # A flag beside --config wins.
    assert cli.main(["train", "--config", str(a / "config.json"), "--workdir", str(c), "--epochs", "1",
                     "--maps", "4"]) == 0
    assert saved(c)["train"]["epochs"] == 1 and saved(c)["model"]["maps"] == 4
    assert summary(c)["epochs"] == 1
    capsys.readouterr()


def test_a_cv_workdirs_config_runs_cv_again_and_trains_one_fold(tmp_path, capsys):
    data_file = write_pool_file(tmp_path / "data", n=90)
    cv, again, one = tmp_path / "cv", tmp_path / "again", tmp_path / "one"
    assert cli.main(["cv", "--workdir", str(cv), "--train-file", data_file, "--folds", "3", "--epochs", "1",
                     *TINY]) == 0
    assert cli.main(["cv", "--config", str(cv / "config.json"), "--workdir", str(again)]) == 0
    first, second = (json.loads((w / "results.json").read_text()) for w in (cv, again))
    assert [m["test_accuracy"] for m in second["members"]] == [m["test_accuracy"] for m in first["members"]]
    assert cli.main(["train", "--config", str(cv / "config.json"), "--workdir", str(one), "--fold", "2"]) == 0
    assert summary(one)["fold"] == 2 and saved(one)["data"]["train_file"] == data_file
    capsys.readouterr()


def test_a_search_workdirs_config_starts_another_search_and_a_run(tmp_path, files, capsys):
    s, again, one = tmp_path / "s", tmp_path / "again", tmp_path / "one"
    grid = ["--grid", "lr=[0.003,0.03]"]
    assert cli.main(["search", "--workdir", str(s), *files, *TINY, "--epochs", "1", *grid]) == 0
    assert saved(s)["optim"]["lr"] == 0.01  # the config the search started from
    assert cli.main(["search", "--config", str(s / "config.json"), "--workdir", str(again), *grid]) == 0
    first, second = (json.loads((w / "results.json").read_text()) for w in (s, again))
    assert second["trials"] == first["trials"]
    assert cli.main(["train", "--config", str(s / "program-0" / "config.json"), "--workdir", str(one)]) == 0
    capsys.readouterr()


def test_an_image_workdirs_config_trains_again(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli.main(["train", "--task", "image", "--dataset", "digits", "--model", "small_cnn", "--width", "4",
                     "--depth", "1", "--workdir", str(a), "--epochs", "1", "--no-progress", "--no-tensorboard",
                     "--no-plots", "--devices", "1"]) == 0
    assert saved(a)["data"]["task"] == "image"
    assert cli.main(["train", "--config", str(a / "config.json"), "--workdir", str(b)]) == 0
    assert summary(b)["task"] == "image" and summary(b)["test_accuracy"] == summary(a)["test_accuracy"]
    capsys.readouterr()
