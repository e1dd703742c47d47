"""The image task in the engine: config rules, augmentation inside the jitted step, 1 vs 8 devices with batch
norm, running averages through the real checkpoint manager, and the command line end to end."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from jaxcnn import augment, cli, configs, tasks
from jaxcnn.data import images as images_lib
from jaxcnn.errors import ConfigError
from jaxcnn.tasks import image as image_task
from jaxcnn.train.losses import get_loss
from jaxcnn.train.program import Member, Program
from jaxcnn.train.state import TrainState
from jaxcnn.train.steps import train_step
from jaxcnn.train.trainer import Run
from tests.train.helpers import run_steps


def tiny_cfg(**overrides):
    base = dict(model="small_cnn", width=4, depth=1, epochs=2, batch_size=12, eval_batch_size=32, progress=False,
                tensorboard=False, plots=False, steps_per_dispatch=4)
    return configs.image(**(base | overrides))


@pytest.fixture(scope="module")
def small_data():
    """A 48/16/16 slice of the digits, enough for the engine's behaviour (not for accuracy)."""
    x, y = images_lib.load_digits().parts["train"]
    return image_task.ImageData([str(i) for i in range(10)], {"image": x[:80], "label": y[:80]}, (8, 8, 1),
                                "sklearn:digits[:80]", "small_cnn", "rotate=10,crop=0.9,noise=0.05")


def member(seed: int = 0) -> Member:
    return Member("slice", seed, np.arange(48, dtype=np.int32), np.arange(48, 64, dtype=np.int32),
                  np.arange(64, 80, dtype=np.int32))


def test_config_rules():
    configs.defaults("image").validate()
    assert configs.defaults("image").model.model is None  # lenet5 unless --model says otherwise
    with pytest.raises(ConfigError, match="^--windows: only for --task text"):
        configs.image(windows=(2, 3)).validate()
    with pytest.raises(ConfigError, match="^--model: only for --task image"):
        configs.Config().replace(model="lenet5").validate()
    with pytest.raises(ConfigError, match="^--augment: only for --task image"):
        configs.Config().replace(augment="flip").validate()
    with pytest.raises(ConfigError, match="^--depth: must be in 1..8"):
        configs.image(depth=0).validate()
    with pytest.raises(ConfigError, match="^--channels: must be 1 or 3"):
        configs.image(channels=2).validate()
    with pytest.raises(ConfigError, match="^--augment: unknown transform 'spin'"):
        configs.image(augment="spin=3").validate()


@pytest.mark.parametrize("args, expected", [
    (["--augment", "rotate=ten"], "jaxcnn train: error: --augment: rotate=ten: 'ten' is not a number"),
    (["--dataset", "svhn"], "jaxcnn train: error: --dataset: unknown image dataset 'svhn'"),
    (["--variant", "static"], "jaxcnn train: error: --variant: only for --task text"),
])
def test_bad_image_flags_are_one_line_errors(tmp_path, capsys, args, expected):
    assert cli.main(["train", "--task", "image", "--workdir", str(tmp_path / "w"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(expected) and "\n" not in err


class Probe(nn.Module):
    """Records the images the training step feeds it (in a mutable collection the step carries)."""

    @nn.compact
    def __call__(self, images, *, train=False, mask=None, dropout_keys=None):
        seen = self.variable("probe", "images", jnp.zeros, images.shape)
        if train:
            seen.value = images
        return nn.Dense(3)(images.reshape(images.shape[0], -1))


def test_augmentation_in_the_jitted_step_varies_per_example_and_step_yet_repeats_from_the_seed():
    chain = augment.parse_augment("rotate=10,crop=0.9,noise=0.05")
    image = jnp.asarray(images_lib.load_digits().parts["train"][0][:1])
    batch = {"image": jnp.tile(image, (4, 1, 1, 1)), "label": jnp.zeros(4, jnp.int32),
             "mask": jnp.array([True, True, True, False]), "index": jnp.array([5, 6, 7, 0])}
    probe = Probe()
    variables = probe.init(jax.random.key(0), batch["image"])
    tx = optax.sgd(0.1)
    state = TrainState.create(apply_fn=image_task.image_forward(probe, chain), params=variables["params"], tx=tx,
                              model_state={"probe": variables["probe"]})
    step = jax.jit(lambda s, b, r: train_step(s, b, r, loss_fn=get_loss("softmax_ce")))

    def seen(state, rng):
        state, _ = step(state, batch, rng)
        return state, np.asarray(state.model_state["probe"]["images"])

    state1, first = seen(state, jax.random.key(42))
    _, second = seen(state1, jax.random.key(42))  # the next step (state.step = 1)
    _, again = seen(state, jax.random.key(42))
    _, other_seed = seen(state, jax.random.key(43))
    assert first.shape == batch["image"].shape
    for i in range(3):
        assert not np.allclose(first[i], image[0], atol=1e-3)  # augmented
        for j in range(i):
            assert not np.allclose(first[i], first[j], atol=1e-3)  # same image, other example: other draw
        assert not np.allclose(first[i], second[i], atol=1e-3)  # same example, next step: other draw
    np.testing.assert_array_equal(first, again)  # same seed and step: the same draws
    assert not np.allclose(first, other_seed, atol=1e-3)
    # Without a chain the step sees the images untouched.
    keys = image_task.example_keys(jax.random.key(42), batch["index"])
    assert image_task.train_inputs(batch["image"], keys, None) is batch["image"]


def test_one_device_and_eight_devices_take_the_same_step_batch_norm_included(tmp_path, small_data):
    assert jax.device_count() >= 8, "tests/conftest.py sets 8 simulated devices"
    cfg = tiny_cfg(augment=small_data.augment)
    results = []
    for devices in (1, 8):
        program = Program(cfg.replace(devices=devices), tasks.get("image"), small_data, [member()])
        assert program.batch == (12 if devices == 1 else 16)  # padded with 4 masked examples on 8 devices
        sums = run_steps(program, 3)
        results.append(jax.device_get((program.state.params, program.state.model_state, sums)))
    (p1, m1, s1), (p8, m8, s8) = results
    assert set(m1) == {"batch_stats"}
    np.testing.assert_allclose(s1["loss_sum"], s8["loss_sum"], rtol=1e-5)
    np.testing.assert_array_equal(s1["confusion"], s8["confusion"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4), p1, p8)
    # Global batch statistics: the running averages match too (the padding never entered them).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4), m1, m8)


def test_running_averages_are_saved_restored_and_used_in_eval(tmp_path, small_data):
    from jaxcnn.predict import Predictor, SavedProgram

    cfg = tiny_cfg(devices=1, epochs=1)
    run = Run(cfg, tasks.get("image"), small_data, [member()], tmp_path / "w")
    initial = jax.device_get(run.program.state.model_state)
    summary = run.run()
    trained = jax.device_get(run.program.state.model_state)
    assert not np.allclose(trained["batch_stats"]["bn1"]["var"], initial["batch_stats"]["bn1"]["var"])
    predictor = Predictor.from_workdir(tmp_path / "w", checkpoint="latest")
    assert predictor.input_name == "file"
    jax.tree.map(np.testing.assert_array_equal, predictor.program.state.model_state, trained)
    test = {k: v[64:80] for k, v in small_data.arrays.items()}
    result = predictor.evaluate_inputs(test["image"], test["label"])
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"])
    # The same images as a labelled .npz file (uint8, names given by integer id) score the same.
    np.savez(tmp_path / "test.npz", x=np.round(test["image"] * 255).astype(np.uint8), y=test["label"])
    from_file = predictor.evaluate_file(str(tmp_path / "test.npz"))
    assert from_file["examples"] == 16 and from_file["accuracy"] == pytest.approx(result["accuracy"], abs=1 / 16)
    # Eval mode reads the running averages: an image scores the same alone as in a batch.
    alone = predictor.predict_proba(test["image"][:1])
    np.testing.assert_allclose(predictor.predict_proba(test["image"])[:1], alone, atol=1e-6)
    saved = predictor.program
    stale = SavedProgram(saved.task, saved.cfg, saved.data, saved.state.replace(model_state=initial), saved.members,
                         saved.epoch)
    assert not np.allclose(np.asarray(stale.infer({"image": test["image"][:1]})),
                           np.asarray(saved.infer({"image": test["image"][:1]})))


def test_command_line_train_evaluate_predict(tmp_path, capsys):
    workdir = str(tmp_path / "w")
    assert cli.main(["train", "--task", "image", "--dataset", "digits", "--model", "lenet5", "--augment",
                     "rotate=10,crop=0.9,noise=0.05", "--workdir", workdir, "--epochs", "3", "--no-progress",
                     "--no-tensorboard", "--no-plots", "--devices", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["dataset"] == "digits" and line["epochs"] == 3 and line["test_accuracy"] > 0.5
    summary = json.loads((tmp_path / "w" / "summary.json").read_text())
    assert summary["task"] == "image" and summary["model"] == "lenet5" and summary["image_shape"] == [8, 8, 1]
    assert summary["train_examples"] + summary["dev_examples"] + summary["test_examples"] == 1797

    assert cli.main(["evaluate", "--workdir", workdir, "--split", "test"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"]) and result["examples"] == 359

    x, y = images_lib.load_digits().parts["train"]
    pngs = []
    for i in range(3):
        pngs.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray((x[i, ..., 0] * 255).astype(np.uint8)).save(pngs[-1])
    assert cli.main(["predict", "--workdir", workdir, *pngs]) == 0
    records = [json.loads(r) for r in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in records] == pngs
    for r in records:
        assert r["label"] in [str(i) for i in range(10)]
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


    assert cli.main(["predict", "--workdir", workdir, str(tmp_path / "missing.png")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing.png: file not found")
