"""cv, search, ensemble and reproduce: specs, combiners, and tiny end-to-end runs through the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxcnn import cli, configs
from jaxcnn.errors import ConfigError
from jaxcnn.experiments import ensemble, report, search
from tests.multi.common import write_pool_file
from tests.train.helpers import write_splits

# One filter width: these runs check the experiments' bookkeeping, and each compiles a smaller program.
TINY = ["--embed-dim", "16", "--maps", "8", "--windows", "2", "--batch-size", "16", "--eval-batch-size", "64",
        "--no-progress", "--no-tensorboard", "--steps-per-dispatch", "8", "--devices", "1", "--optimizer", "adam",
        "--lr", "0.01"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    f = write_splits(tmp_path_factory.mktemp("data"))
    return ["--train-file", f["train_file"], "--dev-file", f["dev_file"], "--test-file", f["test_file"]]


# -- search specs -------------------------------------------------------------------------------------------------
def test_grid_is_every_combination():
    trials = search.grid_trials("lr=[0.5, 1.0]; dropout=[0.3,0.5]; windows=[[3,4,5],[2]]")
    assert len(trials) == 8
    assert trials[0] == {"lr": 0.5, "dropout": 0.3, "windows": [3, 4, 5]}
    assert {json.dumps(t, sort_keys=True) for t in trials}.__len__() == 8


def test_random_trials_are_seeded_and_in_range():
    spec = "lr=loguniform(0.01,1);dropout=uniform(0.2,0.6);maps=int(10,20);windows=[[3],[4,5]]"
    trials = search.random_trials(spec, 20, seed=3)
    assert trials == search.random_trials(spec, 20, seed=3) != search.random_trials(spec, 20, seed=4)
    for t in trials:
        assert 0.01 <= t["lr"] <= 1 and 0.2 <= t["dropout"] <= 0.6 and 10 <= t["maps"] <= 20
        assert isinstance(t["maps"], int) and t["windows"] in ([3], [4, 5])


@pytest.mark.parametrize("spec, message", [
    ("lr=0.5", "list of values"), ("lr=[0.5", "JSON list"), ("lerning_rate=[1]", "not a config field"),
    ("lr", "name=values"),
    ("lr=[]", "non-empty"), ("lr=[1];lr=[2]", "twice"),
])
def test_bad_grid_specs_name_the_problem(spec, message):
    with pytest.raises(ConfigError, match=message):
        search.grid_trials(spec)


def test_bad_ranges_name_the_problem():
    with pytest.raises(ConfigError, match="low < high"):
        search.random_trials("lr=loguniform(0,1)", 2, 0)
    with pytest.raises(ConfigError, match="not a number"):
        search.random_trials("lr=uniform(a,1)", 2, 0)


def test_only_shape_and_static_values_split_programs():
    trials = search.grid_trials("lr=[0.1,1.0];dropout=[0.2,0.5];maps=[4,8]")
    groups = search.group_trials(configs.tiny(), trials)
    assert len(groups) == 2  # one program per maps value; lr x dropout vmapped inside each
    assert sorted(len(i) for _, i in groups) == [4, 4]
    assert {g.model.maps for g, _ in groups} == {4, 8}
    with pytest.raises(ConfigError, match="trial 0"):
        search.group_trials(configs.tiny(), [{"dropout": 1.5}])


# -- ensemble combiners -------------------------------------------------------------------------------------------
def test_vote_breaks_ties_by_mean_probability():
    probs = np.array([[[0.9, 0.1], [0.6, 0.4]], [[0.4, 0.6], [0.45, 0.55]]])  # [K=2, n=2, C=2]
    np.testing.assert_array_equal(ensemble.combine("vote", probs), [0, 0])
    np.testing.assert_array_equal(ensemble.combine("average", probs), [0, 0])
    three = np.concatenate([probs, [[[0.3, 0.7], [0.2, 0.8]]]])
    np.testing.assert_array_equal(ensemble.combine("vote", three), [1, 1])  # 2 votes beat 1 however sure


def test_samme_weights_votes_by_alpha():
    probs = np.eye(3)[np.array([[0, 1], [1, 1], [2, 0]])]  # rounds predict (0, 1), (1, 1), (2, 0)
    np.testing.assert_array_equal(ensemble.samme(probs, [3.0, 1.0, 1.0]), [0, 1])
    np.testing.assert_array_equal(ensemble.samme(probs, [0.5, 1.0, 1.0]), [1, 1])


def test_stacking_learns_to_trust_the_good_member():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    good = np.eye(3)[labels] * 0.8 + 0.2 / 3
    noise = rng.dirichlet(np.ones(3), size=120)
    probs = np.stack([noise, good]).astype(np.float32)
    w, b = ensemble.fit_stacking(probs, labels)
    assert w.shape == (6, 3) and b.shape == (3,)
    assert (ensemble.apply_stacking(probs, w, b) == labels).mean() == 1.0
    assert (ensemble.cross_fit_stacking(probs, labels) == labels).mean() > 0.95


def test_aggregate_over_seeds_and_folds():
    members = [{"seed": s, "fold": f, "test_accuracy": 0.5 + 0.1 * s + 0.01 * f} for s in (0, 1) for f in (0, 1)]
    agg = report.aggregate(members)
    assert agg["per_seed"] == pytest.approx({0: 0.505, 1: 0.605})
    assert agg["seeds"]["mean"] == pytest.approx(0.555) and agg["seeds"]["n"] == 2
    assert agg["seeds"]["std"] == pytest.approx(np.std([0.505, 0.605], ddof=1))
    assert agg["per_fold"][1]["mean"] == pytest.approx(0.56)


# -- end to end through the command line ------------------------------------------------------------------------------
def test_cv_command_writes_per_member_and_aggregate_results(tmp_path, capsys):
    data_file = write_pool_file(tmp_path / "data")
    workdir = tmp_path / "cv"
    assert cli.main(["cv", "--workdir", str(workdir), "--train-file", data_file, "--folds", "3", "--seeds", "2",
                     "--epochs", "2", *TINY]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads((workdir / "results.json").read_text())
    assert line["members"] == 6 and result["protocol"] == "cv"
    assert sorted((m["fold"], m["seed"]) for m in result["members"]) == [(f, s) for f in range(3) for s in (0, 1)]
    per_seed = {s: np.mean([m["test_accuracy"] for m in result["members"] if m["seed"] == s]) for s in (0, 1)}
    assert line["test_mean"] == pytest.approx(np.mean(list(per_seed.values())))
    assert "| fold 2 seed 1 |" in (workdir / "results.md").read_text()
    assert (workdir / "results.png").stat().st_size > 1000


def test_search_ranks_by_dev_and_reports_test_of_the_chosen_only(tmp_path, files, capsys):
    workdir = tmp_path / "s"
    args = ["search", "--workdir", str(workdir), *files, *TINY, "--epochs", "2",
            "--grid", "lr=[0.003,0.03];dropout=[0.2,0.5];maps=[4,8]"]
    assert cli.main(args) == 0
    result = json.loads((workdir / "results.json").read_text())
    devs = [t["dev_accuracy"] for t in result["trials"]]
    assert devs == sorted(devs, reverse=True) and len(devs) == 8
    assert sorted(p.name for p in workdir.glob("program-*")) == ["program-0", "program-1"]
    assert result["best"]["trial"] == result["trials"][0]["trial"]
    assert 0.0 <= result["best"]["test_accuracy"] <= 1.0
    assert all("test_accuracy" not in t for t in result["trials"])
    assert (workdir / "results.md").read_text().count("(not looked at)") == 7
    capsys.readouterr()
    assert cli.main(args[:-1] + ["lr=[0.003]"]) != 0  # another search in the same workdir is refused
    assert "holds another search" in capsys.readouterr().err


@pytest.mark.slow
def test_ensembles_compare_with_the_single_model_and_predict(tmp_path, files, capsys):
    workdir = tmp_path / "e"
    assert cli.main(["ensemble", "--workdir", str(workdir), *files, *TINY, "--epochs", "3", "--members", "2"]) == 0
    capsys.readouterr()
    out = json.loads((workdir / "ensemble.json").read_text())
    assert set(out["methods"]) == {"average", "vote", "stacking", "bagging", "boosting"}
    for name, r in out["methods"].items():
        assert r["beats_single"] == (r["test_accuracy"] > out["single"]["dev_selected"]), name
    assert out["chosen"] == max(out["methods"], key=lambda m: out["methods"][m]["dev_accuracy"])
    assert 1 <= len(out["combiners"]["boosting"]["alphas"]) <= 2
    assert cli.main(["predict", "--workdir", str(workdir), "a good movie", "the plot was awful"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["text"] for r in records] == ["a good movie", "the plot was awful"]
    for r in records:
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    from jaxcnn.predict import Predictor

    predictor = Predictor.from_workdir(workdir)
    assert predictor.method == out["chosen"]
    for method in ("average", "vote", "stacking", "boosting"):
        predictor.method = method
        predictor.combiner = out["combiners"].get(method, {})
        assert predictor.predict_proba(["a good movie"]).shape == (1, 2)


@pytest.mark.slow
def test_reproduce_quick_writes_table_and_plot(tmp_path, data_dir, capsys):
    workdir = tmp_path / "r"
    args = ["reproduce", "--workdir", str(workdir), "--data-dir", str(data_dir), "--datasets", "trec", "--quick",
            "--epochs", "1", "--maps", "4", "--embed-dim", "8", "--no-progress", "--no-tensorboard"]
    assert cli.main(args) == 0
    table = (workdir / "table.md").read_text()
    assert "| trec | rand |" in table and "91.2" in table and "88.2" in table
    assert "| best epochs |" in table and "| 1 | 1 |" in table  # 1 epoch run of 1, best at epoch 1
    assert (workdir / "seeds.png").stat().st_size > 1000
    assert json.loads((workdir / "results.json").read_text())["rows"][0]["epochs"] == 1

    # --table-only trains nothing: the finished set's row from its results, the missing one named; and a rand
    # row ignores --embeddings (its workdir was made without), so one command can list every variant.
    (workdir / "table.md").unlink()
    assert cli.main([*args, "--table-only", "--datasets", "trec,mr", "--embeddings", "/no/such.bin"]) == 0
    table = (workdir / "table.md").read_text()
    assert "| trec | rand |" in table and "Not finished yet: mr-rand." in table
    assert not (workdir / "mr-rand").exists()
    assert cli.main([*args, "--table-only", "--datasets", "mr"]) != 0
    err = capsys.readouterr().err.strip()
    assert "--table-only: no finished set" in err and len(err.splitlines()) == 1


@pytest.mark.slow
@pytest.mark.exhaustive  # the benchmark scripts, not the library: left out of .ci/run for time
def test_benchmark_reports_paired_ratio_and_memory(data_dir):
    from benchmarks.multi import benchmark_cv_vmapped

    out = benchmark_cv_vmapped(data_dir, folds=2, steps=2, repeats=2, memory_of_one=False, maps=4, embed_dim=8,
                               windows=(2, 3))
    assert out["folds"] == 2 and len(out["ratios"]) == 2 and out["ratio"] > 0
    assert out["vmapped_examples_per_second"] > 0 and out["sequential_examples_per_second"] > 0
    assert out["memory"]["K"]["argument_size_in_bytes"] > 0 and out["compile_seconds"]["vmapped"] > 0


@pytest.mark.slow
@pytest.mark.exhaustive  # the benchmark scripts, not the library: left out of .ci/run for time
def test_process_benchmark_runs_the_program_and_each_fold_alone(data_dir):
    from benchmarks.multi import benchmark_cv_processes

    out = benchmark_cv_processes(data_dir, folds=2, epochs=1, extra=["--maps", "4", "--embed-dim", "8",
                                                                     "--windows", "2", "3"])
    assert len(out["per_run_seconds"]) == 2 and out["ratio"] > 0 and out["train_ratio"] > 0
    assert out["wall_seconds"]["sequential"] == pytest.approx(sum(out["per_run_seconds"]))
    for side in ("program", "sequential"):
        accs = out["test_accuracy"][side]
        assert len(accs) == 2 and all(0.0 < a < 1.0 for a in accs), (side, accs)


@pytest.mark.parametrize("args, message", [
    (["search"], "give either --grid SPEC or --random N"),
    (["search", "--random", "3"], "--random: needs --ranges"),
    (["ensemble", "--method", "stack"], "--method: unknown method 'stack'"),
    (["ensemble", "--members", "1"], "--members: an ensemble needs at least 2"),
    (["cv", "--seeds", "two"], "--seeds: expected a count"),
    (["reproduce", "--variants", "rand,fancy"], "--variants: unknown 'fancy'"),
])
def test_bad_experiment_flags_are_one_line_errors(tmp_path, capsys, args, message):
    assert cli.main([args[0], "--workdir", str(tmp_path / "w"), "--dataset", "trec", *args[1:]]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
