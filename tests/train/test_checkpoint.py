"""CheckpointManager: round trip, latest+best retention, topology changes, corrupt-step fallback, disk full."""

import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from jaxcnn.errors import ConfigError, WorkdirError
from jaxcnn.train.checkpoint import CheckpointManager, CheckpointWarning
from tests.corruptions import delete_array_file, empty_folder, garble_metadata, truncate_array_file

REPO = pathlib.Path(__file__).resolve().parents[2]


class _TinyTextCNN(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(200, 16, name="embed")(tokens)
        x = nn.Conv(8, (3,), name="conv_w3")(x).max(axis=1)
        return nn.Dense(2, name="head")(x)


def _state(offset: float = 0.0) -> dict:
    """A realistic training state: Flax params, an adadelta+adam optimizer state, step, epoch and rng key data."""
    params = _TinyTextCNN().init(jax.random.key(0), jnp.zeros((1, 7), jnp.int32))["params"]
    params = jax.tree.map(lambda p: p + offset, params)
    opt_state = optax.chain(optax.adadelta(rho=0.95, eps=1e-6), optax.adam(1e-3)).init(params)
    return {"params": params, "opt_state": opt_state, "step": int(10 * offset), "epoch": np.asarray(2, np.int32),
            "rng": jax.random.key_data(jax.random.key(int(offset))), "order": np.arange(5, dtype=np.int32)}


def _assert_same(restored, expected) -> None:
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        assert np.asarray(got).dtype == np.asarray(want).dtype


def _meta(step: int) -> dict:
    return {"step": step, "config": {"filter_sizes": (3, 4, 5)}, "vocab": ["<pad>", "<unk>", "good"],
            "labels": ["neg", "pos"]}


def test_round_trip_of_realistic_state(tmp_path):
    state = _state(1.0)
    with CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(10, state, _meta(10), {"dev_accuracy": 0.5})
        mngr.wait()
        restored, meta = mngr.restore(10, state)
        step, latest, _ = mngr.restore_latest(state)
    _assert_same(restored, state)
    _assert_same(latest, state)
    assert step == 10
    assert isinstance(restored["opt_state"][1][0], optax.ScaleByAdamState)  # namedtuple types survive
    assert restored["step"] == 10 and isinstance(restored["step"], int)
    assert jax.random.wrap_key_data(restored["rng"]).dtype == jax.random.key(0).dtype
    assert meta == {"step": 10, "config": {"filter_sizes": [3, 4, 5]}, "vocab": ["<pad>", "<unk>", "good"],
                    "labels": ["neg", "pos"]}


def test_save_copies_the_arrays_so_the_caller_may_donate_them(tmp_path):
    state = {"w": jnp.arange(100_000.0), "b": jnp.ones((300, 300))}
    template = jax.eval_shape(lambda: state)
    with CheckpointManager(tmp_path) as mngr:
        mngr.save(1, state, {})
        for leaf in jax.tree.leaves(state):
            leaf.delete()  # what `jax.jit(..., donate_argnums=0)` does to the state on the next step
        step, restored, _ = mngr.restore_latest(template)
    assert step == 1
    np.testing.assert_array_equal(restored["w"], np.arange(100_000.0))
    assert float(restored["b"].sum()) == 90_000.0


def test_keeps_latest_and_best_when_the_metric_rises_then_falls(tmp_path):
    state = _state()
    accuracies = [0.6, 0.8, 0.7, None, 0.5, None]
    with CheckpointManager(tmp_path) as mngr:
        for step, acc in enumerate(accuracies, start=1):
            mngr.save(step, state, _meta(step), None if acc is None else {"dev_accuracy": acc, "dev_loss": 1.0})
        mngr.wait()
        assert mngr.all_steps() == [2, 6]
        assert (mngr.latest_step, mngr.best_step) == (6, 2)
        best_step, _, meta = mngr.restore_best(state)
        assert best_step == 2 and meta["step"] == 2
    with CheckpointManager(tmp_path) as reopened:  # best tracking survives a restart: metrics are on disk
        assert (reopened.all_steps(), reopened.latest_step, reopened.best_step) == ([2, 6], 6, 2)


def test_min_mode_ties_go_to_the_later_step_and_nan_never_wins(tmp_path):
    state = _state()
    with CheckpointManager(tmp_path, best_metric="dev_loss", best_mode="min", async_save=False) as mngr:
        for step, loss in enumerate([0.5, 0.3, 0.3, float("nan"), 0.4], start=1):
            mngr.save(step, state, _meta(step), {"dev_loss": loss})
        assert mngr.all_steps() == [3, 5]
        assert mngr.best_step == 3


def test_without_best_metric_only_the_latest_are_kept(tmp_path):
    state = _state()
    with CheckpointManager(tmp_path, best_metric=None, keep_latest=2) as mngr:
        for step in (1, 2, 3):
            mngr.save(step, state, _meta(step), {"dev_accuracy": 1.0 / step})
        mngr.wait()
        assert mngr.all_steps() == [2, 3]
        assert mngr.best_step is None and mngr.restore_best(state) is None


def test_restores_across_device_topologies(tmp_path):
    assert jax.device_count() == 8, "tests/conftest.py forces 8 host devices"
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    one_device = SingleDeviceSharding(jax.devices()[0])
    state = jax.device_put(_state(2.0), one_device)  # every leaf a jax array, as a trainer's state is
    state_8 = jax.device_put(state, replicated)
    with CheckpointManager(tmp_path / "from8") as mngr:
        mngr.save(1, state_8, _meta(1))
        mngr.wait()
        abstract_1 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype,
                                                                 sharding=one_device), state)
        restored, _ = mngr.restore(1, abstract_1)
    _assert_same(restored, state)
    assert restored["params"]["head"]["kernel"].sharding == one_device
    with CheckpointManager(tmp_path / "from1") as mngr:
        mngr.save(1, state, _meta(1))
        mngr.wait()
        abstract_8 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype,
                                                                 sharding=replicated), state)
        restored, _ = mngr.restore(1, abstract_8)
        restored_unsharded, _ = mngr.restore(1, jax.eval_shape(lambda: state))  # no shardings given
    _assert_same(restored, state)
    kernel = restored["params"]["conv_w3"]["kernel"]
    assert kernel.sharding.is_equivalent_to(replicated, kernel.ndim) and len(kernel.devices()) == 8
    assert restored_unsharded["params"]["head"]["kernel"].sharding == one_device


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory) -> pathlib.Path:
    """A checkpoint folder with step 1 (dev_accuracy 0.9, the best) and step 2 (0.5, the latest)."""
    directory = tmp_path_factory.mktemp("pristine") / "ckpt"
    with CheckpointManager(directory, async_save=False) as mngr:
        mngr.save(1, _state(1.0), _meta(1), {"dev_accuracy": 0.9})
        mngr.save(2, _state(2.0), _meta(2), {"dev_accuracy": 0.5})
        assert mngr.all_steps() == [1, 2]
    return directory


CORRUPTIONS = [truncate_array_file, delete_array_file, garble_metadata, empty_folder]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_corrupt_latest_falls_back_to_the_older_step(tmp_path, two_steps, corrupt):
    directory = tmp_path / "ckpt"
    shutil.copytree(two_steps, directory)
    corrupt(directory / "2")
    with CheckpointManager(directory) as mngr:
        with pytest.warns(CheckpointWarning, match=rf"skipped checkpoint {directory}/2 \(.+\); using step 1") as rec:
            step, state, meta = mngr.restore_latest(_state())
        assert len(rec) == 1 and "\n" not in str(rec[0].message)
        assert step == 1 and meta["step"] == 1
        _assert_same(state, _state(1.0))
        # The corrupt folder is moved aside, so the resumed run can save step 2 again.
        assert mngr.all_steps() == [1] and (directory / "2.corrupt").is_dir()
        mngr.save(2, _state(3.0), _meta(2), {"dev_accuracy": 0.95})
        mngr.wait()
        assert mngr.restore_latest(_state())[0] == 2


def test_corrupt_best_falls_back_to_the_next_best(tmp_path, two_steps):
    directory = tmp_path / "ckpt"
    shutil.copytree(two_steps, directory)
    truncate_array_file(directory / "1")
    with CheckpointManager(directory) as mngr:
        assert mngr.best_step == 1
        with pytest.warns(CheckpointWarning, match=rf"skipped checkpoint {directory}/1 "):
            step, state, _ = mngr.restore_best(_state())
    assert step == 2
    _assert_same(state, _state(2.0))


def test_nothing_restorable_raises_and_renames_nothing(tmp_path, two_steps):
    directory = tmp_path / "ckpt"
    shutil.copytree(two_steps, directory)
    garble_metadata(directory / "1")
    garble_metadata(directory / "2")
    with CheckpointManager(directory) as mngr:
        with pytest.raises(WorkdirError, match=r"no checkpoint in .* can be restored \(step 2: JSONDecodeError: .*; "
                                               r"step 1: JSONDecodeError: "):
            mngr.restore_latest(_state())
        assert mngr.all_steps() == [1, 2]
    with CheckpointManager(tmp_path / "empty") as mngr:
        assert mngr.restore_latest(_state()) is None and mngr.restore_best(_state()) is None


def test_another_models_shapes_raise_without_fallback(tmp_path, two_steps):
    directory = tmp_path / "ckpt"
    shutil.copytree(two_steps, directory)
    wrong = _state()
    wrong["params"]["head"] = {"kernel": jnp.zeros((8, 3)), "bias": jnp.zeros(3)}
    with CheckpointManager(directory) as mngr:
        with pytest.raises(WorkdirError, match=rf"checkpoint {directory}/2 does not match this model: "
                                               r"params/head/bias is \(2,\) there, \(3,\) here"):
            mngr.restore_latest(wrong)
        with pytest.raises(WorkdirError, match=r"/1 does not match this model: order is \(5,\) there, \(6,\) here"):
            mngr.restore(1, dict(_state(), order=np.arange(6, dtype=np.int32)))
        assert mngr.all_steps() == [1, 2]


def test_read_meta(tmp_path, two_steps):
    directory = tmp_path / "ckpt"
    shutil.copytree(two_steps, directory)
    with CheckpointManager(directory, read_only=True) as mngr:
        assert mngr.read_meta()["step"] == 2
        assert mngr.read_meta(1) == {"step": 1, "config": {"filter_sizes": [3, 4, 5]},
                                     "vocab": ["<pad>", "<unk>", "good"], "labels": ["neg", "pos"]}
        with pytest.raises(WorkdirError, match="no checkpoint for step 7"):
            mngr.read_meta(7)
    (directory / "2" / "meta" / "metadata").write_text("{garbled")
    with CheckpointManager(directory, read_only=True) as mngr:
        with pytest.warns(CheckpointWarning, match=rf"skipped checkpoint {directory}/2 \(JSONDecodeError"):
            assert mngr.read_meta()["step"] == 1
        with pytest.raises(WorkdirError, match="cannot read the meta of step 2"):
            mngr.read_meta(2)
    assert sorted(os.listdir(directory)) == ["1", "2"]  # read-only: nothing renamed
    with pytest.raises(WorkdirError, match="no checkpoint folder"):
        CheckpointManager(tmp_path / "missing", read_only=True)
    with CheckpointManager(tmp_path / "fresh") as mngr, pytest.raises(WorkdirError, match="no checkpoint"):
        mngr.read_meta()


def test_rejects_bad_options_and_non_json_meta(tmp_path):
    with pytest.raises(ConfigError, match="best_mode"):
        CheckpointManager(tmp_path, best_mode="maximum")
    with pytest.raises(ConfigError, match="keep_latest"):
        CheckpointManager(tmp_path, keep_latest=0)
    with CheckpointManager(tmp_path) as mngr, pytest.raises(TypeError, match="cannot write object as JSON"):
        mngr.save(1, _state(), {"bad": object()})


_DISK_FULL_CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    import jax.numpy as jnp
    from jaxcnn.errors import WorkdirError
    from jaxcnn.train.checkpoint import CheckpointManager

    mngr = CheckpointManager(sys.argv[1])
    mngr.save(1, {"w": jnp.arange(50_000.0)}, {"step": 1}, {"dev_accuracy": 0.5})
    mngr.wait()
    # Any file write past 4 KiB now fails with EFBIG, as ENOSPC would on a full disk (SIGXFSZ would kill us).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        mngr.save(2, {"w": jnp.arange(50_000.0) + 1}, {"step": 2}, {"dev_accuracy": 0.9})
        mngr.wait()
    except WorkdirError as e:
        print(json.dumps({"error": str(e)}))
""")


def test_failed_write_raises_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    """A real failed write: the child process lowers RLIMIT_FSIZE mid-run, so TensorStore's write of step 2 fails
    in Orbax's background thread, exactly where a full disk fails. A subprocess keeps the limit away from pytest's
    own capture files."""
    directory = tmp_path / "ckpt"
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    child = subprocess.run([sys.executable, "-c", _DISK_FULL_CHILD, str(directory)], capture_output=True,
                           text=True, env=env, timeout=120)
    assert child.returncode == 0, child.stderr[-3000:]
    error = json.loads(child.stdout.strip().splitlines()[-1])["error"]
    assert error == (f"saving checkpoint {directory}/2 failed: File too large; step 1 is the last complete "
                     f"checkpoint")
    template = {"w": jax.ShapeDtypeStruct((50_000,), jnp.float32)}
    with CheckpointManager(directory) as mngr:
        step, state, meta = mngr.restore_latest(template)
        assert (step, meta) == (1, {"step": 1})
        np.testing.assert_array_equal(state["w"], np.arange(50_000.0))
        mngr.save(2, {"w": jnp.ones(50_000)}, {"step": 2}, {"dev_accuracy": 0.9})
        mngr.wait()
        assert mngr.all_steps() == [2]
        assert os.listdir(directory) == ["2"]  # the half-written step 2 was cleaned up


def test_abandoned_checkpoint_tasks_are_not_reported_and_other_tasks_are(caplog):
    """asyncio reports an abandoned task when it is collected. One of Orbax's reads may be a TensorStore future
    wrapped by asyncio (seen in CI: no "orbax" in the report, only the error's tensorstore_spec); its report is a
    traceback the failed restore already said in one line. Any other task's report still reaches the log."""
    import asyncio
    import gc

    from jaxcnn.train.process import install_process_hooks

    install_process_hooks()  # the command installs them; importing jaxcnn does not (tests/test_architecture.py)

    def abandon(error: Exception) -> None:
        loop = asyncio.new_event_loop()

        async def fail():
            raise error

        task = loop.create_task(fail())
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
        del task
        gc.collect()

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        abandon(ValueError('NOT_FOUND: Error opening "zarr" driver [tensorstore_spec=\'{"driver":"zarr"}\']'))
        assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
        abandon(ValueError("some other library's task"))
        assert [r for r in caplog.records if "never retrieved" in r.getMessage()]
