"""SIGKILL at any moment loses nothing: the real `jaxcnn train` killed during a checkpoint save, between steps,
inside an evaluation, halfway through a metrics line and at random moments, re-run each time with the same
command, ends with the parameters, optimizer state and metrics of an uninterrupted run, bit for bit (CPU)."""

from __future__ import annotations

import pytest

from tools import faults as reliability
from jaxcnn.errors import ConfigError
from tools.faults import Fault, Kill
from tests.reliability.conftest import EPOCHS

STEPS_PER_EPOCH = 10  # the tiny run: 160 examples in batches of 16, two steps per dispatch


def assert_survived(report: reliability.KillResumeReport, kills: int) -> None:
    assert report.problems == [], "\n".join(report.problems) + "\n" + report.table()
    assert report.kills_survived == kills == len(report.records)


def test_killed_during_a_save_and_between_steps_ends_as_an_uninterrupted_run(tiny, reference, tmp_path):
    """The CI-sized check: two kills. The first lands in the first checkpoint save, before any checkpoint is
    complete, so the resumed run starts afresh over a metrics.jsonl that already holds epoch 1."""
    kills = [Kill("save:1"), Kill(f"step:{2 * STEPS_PER_EPOCH + 4}")]
    report = reliability.kill_resume(tmp_path, kills, epochs=EPOCHS, files=tiny.files, reference=reference,
                                     compile_cache=tiny.env["JAX_COMPILATION_CACHE_DIR"])
    assert_survived(report, 2)
    save, step = report.records
    assert save.temporary_folders == ["1.orbax-checkpoint-tmp"] and save.checkpoint_epoch is None  # inside the save
    assert (save.logged_epoch, save.resumed_epoch) == (1, 0)
    assert step.note == f"jaxcnn fault: SIGKILL after dispatching the block of steps from {2 * STEPS_PER_EPOCH + 4}"
    # Epochs this small end before their asynchronous save does, so epoch 2's may still have been in flight.
    assert step.resumed_epoch == step.checkpoint_epoch in (1, 2)


@pytest.mark.slow
def test_six_kills_at_every_kind_of_moment_with_a_checkpoint_every_two_epochs(tiny, tmp_path):
    epochs, every = 9, 2
    plan = reliability.random_plan(6, epochs, seed=1, steps_per_epoch=STEPS_PER_EPOCH, steps_per_dispatch=2,
                                   checkpoint_every=every)
    report = reliability.kill_resume(tmp_path, plan, epochs=epochs, extra=["--checkpoint-every", str(every)],
                                     files=tiny.files, compile_cache=tiny.env["JAX_COMPILATION_CACHE_DIR"])
    assert_survived(report, 6)
    kinds = sorted("external" if r.kill.startswith("external") else r.kill.split(":")[0] for r in report.records)
    assert kinds == ["eval", "external", "external", "metrics", "save", "step"]
    assert any(r.kill.startswith("save:") and r.temporary_folders for r in report.records)  # killed inside a save


def test_faults_parse_and_reject_bad_specs():
    assert reliability.parse_fault("save:3") == Fault("save", 3)
    assert reliability.parse_fault("eval:2:test") == Fault("eval", 2, "test")
    assert str(Fault("eval", 2, "test")) == "eval:2:test" and str(Fault("nan", 7)) == "nan:7"
    for bad in ("save", "save:x", "boom:1", "eval:2:train", "step:1:dev"):
        with pytest.raises(ConfigError, match=f"JAXCNN_FAULT: expected KIND:N .* got '{bad}'"):
            reliability.parse_fault(bad)


def test_random_plans_put_one_kill_of_each_kind_in_increasing_epochs():
    plan = reliability.random_plan(6, 10, seed=3, steps_per_epoch=10, steps_per_dispatch=2, checkpoint_every=3)
    kinds = [k.fault.split(":")[0] if k.fault else "external" for k in plan]
    assert sorted(kinds) == ["eval", "external", "external", "metrics", "save", "step"]
    epochs = []
    for k in plan:
        if k.fault is None:
            epochs.append(k.after_epoch + 1)
            assert 0.0 <= k.fraction < 1.0
        elif k.fault.startswith("step:"):
            step = int(k.fault.split(":")[1])
            assert step % 2 == 0 and step % 10 != 0  # a block boundary inside an epoch, not its start
            epochs.append(step // 10 + 1)
        else:
            epochs.append(int(k.fault.split(":")[1]))
    assert epochs == sorted(epochs) and len(set(epochs)) == 6 and max(epochs) < 10
    save_epoch = next(int(k.fault.split(":")[1]) for k in plan if k.fault and k.fault.startswith("save"))
    assert save_epoch % 3 == 0  # an epoch that saves
    assert plan == reliability.random_plan(6, 10, seed=3, steps_per_epoch=10, steps_per_dispatch=2,
                                           checkpoint_every=3)
    with pytest.raises(ValueError, match="more than 6 epochs"):
        reliability.random_plan(6, 6, seed=0, steps_per_epoch=10)


def test_epoch_issues_finds_missing_and_duplicated_epochs():
    good = [{"kind": k, "epoch": e} for e in (1, 2) for k in ("train", "dev", "test")]
    assert reliability.epoch_issues(good) == []
    assert reliability.epoch_issues(good + good[:1]) == ["train epoch 1 logged 2 times"]
    assert reliability.epoch_issues(good[1:]) == ["train epoch 1 missing"]
