"""`jaxcnn ensemble`: K members combined five ways, each compared with a single model on the same budget.

All ensembles use one split (the config's seed and fold) and K trainings:
- average: the mean of K seed-members' class probabilities (one program).
- vote: their majority vote (ties go to the class with the higher mean probability).
- stacking: a multinomial logistic regression on their dev-set log-probabilities (the combiner), applied to
  test; its dev accuracy is measured by 5-fold cross-fitting on dev, so it is not fitted on what it is scored on.
- bagging: K members on bootstrap resamples of the training rows (one program), probabilities averaged.
- boosting: multi-class AdaBoost (SAMME, Zhu et al. 2009): K rounds, one after another (each round's example
  weights depend on the previous rounds); round m trains on the example weights (the step's loss is the weighted
  mean), its weighted training error e_m gives alpha_m = log((1 - e_m) / e_m) + log(C - 1), the weights of the
  examples it got wrong grow by exp(alpha_m), and the ensemble predicts argmax_c sum_m alpha_m [pred_m = c].
  A round with e_m = 0 (a CNN can fit its training set) ends the boosting: that round alone decides.

"Same budget": the K trainings could instead have picked one model by dev accuracy; `single.dev_selected` is
that model's test accuracy, and each method `beats_single` when its test accuracy is higher.

Workdir: `config.json` (the shared config), `seeds/`, `bagging/`, `boosting/round-<m>/` (program workdirs),
`ensemble.json` (results and the combiners) and `ensemble.md`. `jaxcnn predict --workdir DIR` predicts with the
method best on dev (`jaxcnn.predict.Predictor`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn import data as data_lib
from jaxcnn import tasks as tasks_lib
from jaxcnn.configs import Config
from jaxcnn.experiments import report
from jaxcnn.predict import ENSEMBLE_FILE, stacking_features
from jaxcnn.tasks.api import Examples, Task
from jaxcnn.train.program import Member
from jaxcnn.train.trainer import RESULT_NEUTRAL, Run, member_for, train_members
from jaxcnn.train.workdir import WorkdirLock, atomic_write_json, atomic_write_text, check_config

log = logging.getLogger("jaxcnn")
_EPS = 1e-7


@dataclasses.dataclass
class _Setup:
    """What every program of an ensemble shares: the task, the examples, the split and the seeds."""

    cfg: Config
    task: Task
    examples: Examples
    split: Member
    seeds: list[int]

    def labels(self, split: str) -> np.ndarray:
        return self.examples.labels[getattr(self.split, split)]

    def train(self, members: Sequence[Member], workdir: pathlib.Path) -> Run:
        return train_members(self.cfg, members, workdir, task=self.task, examples=self.examples)

    def member(self, name: str, seed: int, **kwargs: Any) -> Member:
        s = self.split
        return Member(name, seed, kwargs.pop("train", s.train), s.dev, s.test, s.fold, **kwargs)


def run_ensembles(cfg: Config, workdir: str | pathlib.Path, k: int, methods: Sequence[str]) -> dict[str, Any]:
    """Trains (or resumes) what `methods` need, combines, compares with the single model, writes ensemble.json."""
    cfg.validate()
    workdir = pathlib.Path(workdir)
    with WorkdirLock(workdir):
        check_config(workdir, cfg.to_dict(), ignore=RESULT_NEUTRAL)
    task = tasks_lib.get(cfg.data.task)
    examples = task.load(cfg)
    seeds = [cfg.train.seed + i for i in range(k)]
    setup = _Setup(cfg, task, examples, member_for(cfg, examples), seeds)
    out: dict[str, Any] = {"dataset": report.dataset_name(cfg), "variant": cfg.model.variant, "members": k,
                           "seeds": seeds, "single": None, "methods": {}, "combiners": {}, "programs": {}}
    labels = {s: setup.labels(s) for s in ("dev", "test")}
    if {"average", "vote", "stacking"} & set(methods):
        _seed_ensembles(out, setup, labels, methods, workdir)
    if "bagging" in methods:
        members = [setup.member(f"bag {s}", s, train=bootstrap(setup.split.train, s)) for s in seeds]
        run = setup.train(members, workdir / "bagging")
        probs = {s: run.program.probabilities(getattr(setup.split, s)) for s in ("dev", "test")}
        _record(out, "bagging", combine("average", probs["dev"]), combine("average", probs["test"]), labels,
                ["bagging"], run.member_summaries())
    if "boosting" in methods:
        alphas, probs, dirs, summaries = boost(setup, workdir / "boosting")
        out["combiners"]["boosting"] = {"alphas": alphas}
        _record(out, "boosting", samme(probs["dev"], alphas), samme(probs["test"], alphas), labels, dirs, summaries)
    for r in out["methods"].values():
        r["beats_single"] = bool(r["test_accuracy"] > out["single"]["dev_selected"])
    names = list(out["methods"])
    out["chosen"] = max(names, key=lambda m: (out["methods"][m]["dev_accuracy"], -names.index(m)))
    atomic_write_json(workdir / ENSEMBLE_FILE, out)
    atomic_write_text(workdir / "ensemble.md", _table(out))
    return out


def bootstrap(rows: np.ndarray, seed: int) -> np.ndarray:
    """A resample of `rows` of the same size, with replacement, sorted (the member's data order then depends on
    its seed alone, as for any member)."""
    rng = np.random.default_rng([seed, 7919])
    return np.sort(rng.choice(rows, size=len(rows), replace=True)).astype(np.int32)


def _seed_ensembles(out: dict[str, Any], setup: _Setup, labels: dict[str, np.ndarray], methods: Sequence[str],
                    workdir: pathlib.Path) -> None:
    """average, vote and stacking: one program of seed-members, combined three ways."""
    run = setup.train([setup.member(f"seed {s}", s) for s in setup.seeds], workdir / "seeds")
    probs = {s: run.program.probabilities(getattr(setup.split, s)) for s in ("dev", "test")}
    for method in ("average", "vote"):
        if method in methods:
            _record(out, method, combine(method, probs["dev"]), combine(method, probs["test"]), labels, ["seeds"],
                    run.member_summaries())
    if "stacking" in methods:
        weights, bias = fit_stacking(probs["dev"], labels["dev"])
        out["combiners"]["stacking"] = {"weights": weights.tolist(), "bias": bias.tolist()}
        _record(out, "stacking", cross_fit_stacking(probs["dev"], labels["dev"]),
                apply_stacking(probs["test"], weights, bias), labels, ["seeds"], run.member_summaries())


def _record(out: dict[str, Any], method: str, dev_pred: np.ndarray, test_pred: np.ndarray,
            labels: dict[str, np.ndarray], programs: list[str], summaries: Sequence[dict[str, Any]]) -> None:
    """Stores a method's scores; the first program's members are the single-model baseline."""
    out["methods"][method] = {"dev_accuracy": float(np.mean(dev_pred == labels["dev"])),
                              "test_accuracy": float(np.mean(test_pred == labels["test"]))}
    out["programs"][method] = programs
    out["single"] = out["single"] or _single(summaries)


def _single(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    tests = [s["test_accuracy"] for s in summaries]
    best = max(range(len(summaries)), key=lambda i: (summaries[i]["dev_accuracy"], -i))
    return {"mean": float(np.mean(tests)), "std": report.stats(tests)["std"], "min": float(min(tests)),
            "max": float(max(tests)), "dev_selected": float(tests[best])}


# -- combiners (probabilities <float32>[K, n, C] -> predicted class <int>[n]) -----------------------------------
def combine(method: str, probs: np.ndarray) -> np.ndarray:
    """"average": argmax of the mean probability; "vote": the most predicted class, ties to the higher mean."""
    mean = probs.mean(0)
    if method == "average":
        return mean.argmax(-1)
    votes = np.stack([np.bincount(p, minlength=probs.shape[-1]) for p in probs.argmax(-1).T])
    return (votes + 0.5 * mean).argmax(-1)  # a mean probability (< 1) only breaks ties between equal counts


def fit_stacking(probs: np.ndarray, labels: np.ndarray, l2: float = 1e-2, steps: int = 200
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A multinomial logistic regression (L2-penalised, L-BFGS) from members' log-probabilities to the label.

    Returns: (weights <float32>[K * C, C], bias <float32>[C]).
    """
    w, b = _fit_logistic(jnp.asarray(stacking_features(probs)), jnp.asarray(labels), jnp.float32(l2),
                         num_classes=probs.shape[-1], steps=steps)
    return np.asarray(w), np.asarray(b)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_logistic(x: jax.Array, y: jax.Array, l2: jax.Array, *, num_classes: int, steps: int):
    def loss(p):
        logits = x @ p["w"] + p["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean() + l2 * jnp.sum(p["w"] ** 2)

    tx = optax.lbfgs()

    def step(carry, _):
        p, state = carry
        value, grad = jax.value_and_grad(loss)(p)
        updates, state = tx.update(grad, state, p, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(p, updates), state), None

    params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params["w"], params["b"]


def apply_stacking(probs: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return (stacking_features(probs) @ weights + bias).argmax(-1)


def cross_fit_stacking(probs: np.ndarray, labels: np.ndarray, folds: int = 5) -> np.ndarray:
    """Each dev example predicted by a combiner fitted on the other folds of dev."""
    n = probs.shape[1]
    pred = np.zeros(n, np.int64)
    for test in data_lib.kfold_indices(n, min(folds, n), 0):
        train = np.setdiff1d(np.arange(n), test)
        w, b = fit_stacking(probs[:, train], labels[train])
        pred[test] = apply_stacking(probs[:, test], w, b)
    return pred


def samme(probs: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """argmax_c sum_m alpha_m [argmax p_m = c]."""
    k = len(alphas)
    votes = np.zeros(probs.shape[1:], np.float64)
    hits = probs[:k].argmax(-1)
    for m in range(k):
        votes[np.arange(votes.shape[0]), hits[m]] += alphas[m]
    return votes.argmax(-1)


def boost(setup: _Setup, workdir: pathlib.Path
          ) -> tuple[list[float], dict[str, np.ndarray], list[str], list[dict[str, Any]]]:
    """SAMME rounds (see the module docstring). Returns (alphas, {"dev", "test": <float32>[rounds, n, C]},
    round workdirs relative to the ensemble's, round summaries)."""
    split = setup.split
    train_labels = setup.labels("train")
    n, c = len(train_labels), len(setup.examples.label_names)
    weights = np.ones(n, np.float64)
    alphas: list[float] = []
    probs: dict[str, list[np.ndarray]] = {"dev": [], "test": []}
    dirs, summaries = [], []
    for m, seed in enumerate(setup.seeds):
        member = setup.member(f"round {m}", seed, weights=(weights * n / weights.sum()).astype(np.float32))
        run = setup.train([member], workdir / f"round-{m}")
        dirs.append(f"boosting/round-{m}")
        summaries += run.member_summaries()
        for s in ("dev", "test"):
            probs[s].append(run.program.probabilities(getattr(split, s))[0])
        wrong = run.program.probabilities(split.train)[0].argmax(-1) != train_labels
        error = float(weights[wrong].sum() / weights.sum())
        if error >= 1.0 - 1.0 / c:
            log.info("boosting round %d: weighted error %.4f is no better than chance; stopping", m, error)
            if not alphas:
                alphas.append(1.0)
            else:
                dirs.pop()
                probs = {s: p[:-1] for s, p in probs.items()}
            break
        alphas.append(math.log((1.0 - max(error, _EPS)) / max(error, _EPS)) + math.log(c - 1))
        log.info("boosting round %d: weighted training error %.4f, alpha %.3f", m, error, alphas[-1])
        if error == 0.0:
            break
        weights = weights * np.exp(alphas[-1] * wrong)
    return alphas, {s: np.stack(p) for s, p in probs.items()}, dirs, summaries


def _table(out: dict[str, Any]) -> str:
    single = out["single"]
    lines = [f"# Ensembles of {out['members']} on {out['dataset']} (CNN-{out['variant']})", "",
             f"Single model: test {report.pct(single['mean'], 2)} ± {report.pct(single['std'], 2)} "
             f"(min {report.pct(single['min'], 2)}, max {report.pct(single['max'], 2)}); chosen by dev among the "
             f"same trainings: {report.pct(single['dev_selected'], 2)}", "",
             "| method | dev accuracy | test accuracy | beats the single model on the same budget |",
             "|---|---|---|---|"]
    for name, r in out["methods"].items():
        lines.append(f"| {name} | {report.pct(r['dev_accuracy'], 2)} | {report.pct(r['test_accuracy'], 2)} | "
                     f"{'yes' if r['beats_single'] else 'no'} |")
    return "\n".join([*lines, "", f"`jaxcnn predict` on this workdir uses: {out['chosen']} (best on dev)", ""])
