"""Losses, metrics and the optimizer pieces, each against a closed form or an independent reference
(scikit-learn for the metrics, hand-written update rules for the optimizers)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn import metrics as sk

from jaxcnn.configs import OptimConfig
from jaxcnn.errors import ConfigError
from jaxcnn.train import losses, metrics
from jaxcnn.train.optim import make_optimizer, make_schedule, max_norm_constraint, penalty

LOGITS = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
LABELS = jnp.array([0, 1])


def log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


# --- losses -------------------------------------------------------------------------------------------------

def test_softmax_ce_is_minus_log_probability_of_the_label():
    expected = -log_softmax(LOGITS)[[0, 1], [0, 1]]
    np.testing.assert_allclose(losses.softmax_ce(LOGITS, LABELS), expected, rtol=1e-6)


def test_label_smoothing_mixes_in_the_uniform_distribution():
    a, k = 0.1, 3
    lp = log_softmax(LOGITS)
    target = np.full((2, k), a / k)
    target[[0, 1], [0, 1]] += 1 - a
    np.testing.assert_allclose(losses.softmax_ce(LOGITS, LABELS, a), -(target * lp).sum(-1), rtol=1e-6)


def test_sigmoid_ce_one_logit_and_one_vs_rest():
    z, y = jnp.array([1.5, -0.5]), jnp.array([1, 0])
    expected = [math.log1p(math.exp(-1.5)), math.log1p(math.exp(-0.5))]
    np.testing.assert_allclose(losses.sigmoid_ce(z, y), expected, rtol=1e-6)
    np.testing.assert_allclose(losses.sigmoid_ce(z[:, None], y), expected, rtol=1e-6)
    # Several logits: each is a binary problem against the one-hot label, summed.
    sig = 1 / (1 + np.exp(-np.asarray(LOGITS, np.float64)))
    onehot = np.eye(3)[[0, 1]]
    bce = -(onehot * np.log(sig) + (1 - onehot) * np.log(1 - sig)).sum(-1)
    np.testing.assert_allclose(losses.sigmoid_ce(LOGITS, LABELS), bce, rtol=1e-5)


def test_multilabel_sigmoid_ce_and_its_smoothing():
    targets = jnp.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    sig = 1 / (1 + np.exp(-np.asarray(LOGITS, np.float64)))

    def bce(t):
        return -(t * np.log(sig) + (1 - t) * np.log(1 - sig)).sum(-1)

    np.testing.assert_allclose(losses.multilabel_sigmoid_ce(LOGITS, targets), bce(np.asarray(targets)), rtol=1e-5)
    smoothed = np.asarray(targets) * 0.8 + 0.1
    np.testing.assert_allclose(losses.multilabel_sigmoid_ce(LOGITS, targets, 0.2), bce(smoothed), rtol=1e-5)


def test_regression_losses_sum_over_outputs():
    pred = jnp.array([[0.0, 3.0], [1.0, 1.2]])
    target = jnp.array([[0.5, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(losses.mse(pred, target), [0.25 + 9.0, 0.04], rtol=1e-6)
    # Huber with delta 1: 0.5 e^2 inside |e| <= 1, |e| - 0.5 outside.
    np.testing.assert_allclose(losses.huber(pred, target), [0.125 + 2.5, 0.02], rtol=1e-6)
    np.testing.assert_allclose(losses.mse(jnp.array([[2.0], [0.0]]), jnp.array([1.0, 0.0])), [1.0, 0.0])


def test_unknown_loss_is_a_config_error():
    with pytest.raises(ConfigError, match="--loss: unknown loss 'hinge'"):
        losses.get_loss("hinge")


# --- metrics ------------------------------------------------------------------------------------------------

def test_metrics_from_counts_equal_scikit_learn_at_any_batching():
    rng = np.random.default_rng(0)
    n, k = 203, 4
    logits = rng.normal(size=(n, k)).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int32)
    labels[labels == 3] = 2  # class 3 never occurs: macro-F1 averages over the classes present, as sklearn's labels=
    per_example = rng.random(n).astype(np.float32)
    pred = logits.argmax(-1)

    def counts_in(batch):
        total = None
        for s in range(0, n, batch):
            part = slice(s, s + batch)
            rows = np.arange(s, s + batch)
            mask = rows < n
            pad = batch - mask.sum()

            def padded(x):
                return np.concatenate([x[part], np.zeros((pad,) + x.shape[1:], x.dtype)])

            c = metrics.batch_counts(jnp.asarray(padded(logits)), jnp.asarray(padded(labels)), jnp.asarray(mask),
                                     jnp.asarray(padded(per_example)))
            total = c if total is None else metrics.add(total, c)
        return metrics.summarize(jax.device_get(total), ["a", "b", "c", "d"])

    present = sorted(set(labels.tolist()))
    for batch in (1, 7, 64, 500):
        got = counts_in(batch)
        assert got["examples"] == n
        assert got["accuracy"] == pytest.approx(sk.accuracy_score(labels, pred), abs=1e-12)
        assert got["macro_f1"] == pytest.approx(sk.f1_score(labels, pred, average="macro", labels=present), abs=1e-9)
        assert got["loss"] == pytest.approx(float(per_example.mean()), rel=1e-5)
        np.testing.assert_array_equal(got["confusion"], sk.confusion_matrix(labels, pred, labels=range(k)))
        prec = sk.precision_score(labels, pred, average=None, labels=range(k), zero_division=0)
        rec = sk.recall_score(labels, pred, average=None, labels=range(k), zero_division=0)
        np.testing.assert_allclose(list(got["precision"].values()), prec, atol=1e-12)
        np.testing.assert_allclose(list(got["recall"].values()), rec, atol=1e-12)


# --- optimizers, schedules, penalties, constraint -----------------------------------------------------------

PARAMS = {"dense": {"kernel": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "bias": jnp.array([0.3, -0.3])}}
GRADS = {"dense": {"kernel": jnp.array([[0.2, -0.1], [0.0, 0.4]]), "bias": jnp.array([1.0, -1.0])}}


def first_update(cfg: OptimConfig, grads=GRADS, params=PARAMS, steps: int = 1):
    tx = make_optimizer(cfg, steps_per_epoch=10, total_steps=100)
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return updates, params


def leaves(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.mark.parametrize("name, rule", [
    ("sgd", lambda g, lr: -lr * g),
    ("momentum", lambda g, lr: -lr * g),  # the trace starts at zero: first step = -lr g
    ("nesterov", lambda g, lr: -lr * 1.9 * g),  # g + momentum * (momentum * 0 + g)
    ("adam", lambda g, lr: -lr * np.sign(g) * (np.abs(g) > 0)),  # bias-corrected m/sqrt(v) = sign(g) (eps aside)
    ("adagrad", lambda g, lr: -lr * g / np.sqrt(0.1 + g * g + 1e-7)),  # optax's initial accumulator 0.1
    ("rmsprop", lambda g, lr: -lr * g / (np.sqrt(0.1 * g * g) + 1e-8)),  # decay 0.9, eps 1e-8
    ("adadelta", lambda g, lr: -lr * np.sqrt(1e-6) / np.sqrt(0.05 * g * g + 1e-6) * g),  # Kim's rho 0.95, eps 1e-6
])
def test_first_step_of_each_optimizer_is_its_closed_form(name, rule):
    cfg = OptimConfig(optimizer=name)
    lr = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adam": 1e-3, "adagrad": 0.01, "rmsprop": 1e-3,
          "adadelta": 1.0}[name]
    updates, _ = first_update(cfg)
    g = leaves(GRADS).astype(np.float64)
    np.testing.assert_allclose(leaves(updates), rule(g, lr), rtol=2e-4, atol=1e-9)


def test_adadelta_second_step_uses_its_accumulated_step_sizes():
    g = 0.3
    grads = {"w": jnp.array([g])}
    updates, _ = first_update(OptimConfig(optimizer="adadelta"), grads, {"w": jnp.array([0.0])}, steps=2)
    rho, eps = 0.95, 1e-6
    e_g1 = (1 - rho) * g * g
    d1 = math.sqrt(eps) / math.sqrt(e_g1 + eps) * g
    e_x1 = (1 - rho) * d1 * d1
    e_g2 = rho * e_g1 + (1 - rho) * g * g
    d2 = math.sqrt(e_x1 + eps) / math.sqrt(e_g2 + eps) * g
    np.testing.assert_allclose(np.asarray(updates["w"]), [-d2], rtol=1e-5)


@pytest.mark.parametrize("schedule, expected", [
    ("constant", {0: 0.1, 15: 0.1, 99: 0.1}),
    ("step", {0: 0.1, 19: 0.1, 20: 0.01, 45: 0.001}),  # decay_epochs 2 x 10 steps, rate 0.1
    ("cosine", {0: 0.1, 50: 0.05, 100: 0.0}),
    ("warmup_cosine", {0: 0.0, 5: 0.05, 10: 0.1, 55: 0.05, 100: 0.0}),  # warmup 1 epoch = 10 steps
])
def test_schedules(schedule, expected):
    cfg = OptimConfig(optimizer="sgd", lr=0.1, schedule=schedule, decay_epochs=2.0, warmup_epochs=1.0)
    fn = make_schedule(cfg, steps_per_epoch=10, total_steps=100)
    for step, value in expected.items():
        assert float(fn(step)) == pytest.approx(value, abs=1e-7), (schedule, step)


def test_clip_norm_scales_the_whole_gradient():
    updates, _ = first_update(OptimConfig(optimizer="sgd", lr=1.0, clip_norm=0.5))
    g = leaves(GRADS)
    np.testing.assert_allclose(leaves(updates), -g * 0.5 / np.linalg.norm(g), rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adadelta", "adam", "adamw"])
def test_weight_decay_is_decoupled_and_spares_biases(name):
    """With decoupled decay the update is the optimizer's own plus -lr * wd * w on kernels only; an adaptive
    optimizer must not rescale it (that would be an L2 penalty)."""
    wd = 0.5
    plain, _ = first_update(OptimConfig(optimizer=name, weight_decay=0.0))
    decayed, _ = first_update(OptimConfig(optimizer=name, weight_decay=wd))
    lr = {"sgd": 0.01, "adadelta": 1.0, "adam": 1e-3, "adamw": 1e-3}[name]
    if name == "adamw":  # adamw at weight_decay 0 is adam
        plain, _ = first_update(OptimConfig(optimizer="adam"))
    np.testing.assert_allclose(decayed["dense"]["kernel"] - plain["dense"]["kernel"],
                               -lr * wd * PARAMS["dense"]["kernel"], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(decayed["dense"]["bias"], plain["dense"]["bias"], rtol=1e-6)


def test_penalties_count_kernels_only():
    params = {"conv": {"kernel": jnp.ones((3, 2, 2)), "bias": jnp.ones(2)},
              "head": {"kernel": jnp.array([[3.0, -4.0]]), "bias": jnp.array([10.0])},
              "embed": {"embedding": jnp.full((5, 2), 7.0)}}
    assert float(penalty(params, 0.0, 0.0)) == 0.0
    assert float(penalty(params, 0.1, 0.0)) == pytest.approx(0.1 * (12 + 7))
    assert float(penalty(params, 0.0, 0.2)) == pytest.approx(0.1 * (12 + 25))


def test_max_norm_rescales_each_output_column_to_at_most_c():
    kernel = jnp.array([[3.0, 0.6], [4.0, 0.8]])  # column norms 5 and 1
    params = {"head": {"kernel": kernel, "bias": jnp.array([9.0, 9.0])},
              "bank": {"conv_w3": {"kernel": jnp.full((3, 2, 2), 10.0)}}}
    out = max_norm_constraint(params, 3.0)
    np.testing.assert_allclose(out["head"]["kernel"], [[1.8, 0.6], [2.4, 0.8]], rtol=1e-6)
    np.testing.assert_array_equal(out["head"]["bias"], params["head"]["bias"])  # biases are free
    np.testing.assert_array_equal(out["bank"]["conv_w3"]["kernel"], params["bank"]["conv_w3"]["kernel"])  # as Kim's
    assert max_norm_constraint(params, None) is params
