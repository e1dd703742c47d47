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

Workdir: `seeds/`, `bagging/`, `boosting/round-<m>/` (MultiRun workdirs), `ensemble.json` (results and the
combiners) and `ensemble.md`. `jaxcnn predict --workdir DIR` predicts with the method best on dev.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import pathlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn import data as data_lib
from jaxcnn.configs import Config
from jaxcnn.errors import WorkdirError
from jaxcnn.experiments import report
from jaxcnn.experiments.pool import Source, bootstrap, load_source, split_rows
from jaxcnn.experiments.programs import run_program
from jaxcnn.tasks import text as text_task
from jaxcnn.train.checkpoint import CheckpointManager
from jaxcnn.train.multi import Member, abstract_saveable
from jaxcnn.train.workdir import atomic_write_json, atomic_write_text

log = logging.getLogger("jaxcnn")
ENSEMBLE_FILE = "ensemble.json"
_EPS = 1e-7


def run_ensembles(cfg: Config, workdir: str | pathlib.Path, k: int, methods: Sequence[str]) -> dict[str, Any]:
    """Trains (or resumes) what `methods` need, combines, compares with the single model, writes ensemble.json."""
    cfg.validate()
    workdir = pathlib.Path(workdir)
    source = load_source(cfg)
    rows = split_rows(source, cfg)
    seeds = [cfg.train.seed + i for i in range(k)]
    out: dict[str, Any] = {"dataset": report.dataset_name(cfg), "variant": cfg.model.variant, "members": k,
                           "seeds": seeds, "single": None, "methods": {}, "combiners": {}, "programs": {}}
    labels = {s: source.labels[rows[s]] for s in ("dev", "test")}
    if {"average", "vote", "stacking"} & set(methods):
        _seed_ensembles(out, cfg, source, rows, labels, methods, workdir)
    if "bagging" in methods:
        members = [Member(f"bag {s}", s, bootstrap(rows["train"], s), rows["dev"], rows["test"]) for s in seeds]
        run = run_program(cfg, source, members, workdir / "bagging")
        probs = {s: run.program.probabilities(rows[s], run.program.best_params) for s in ("dev", "test")}
        _record(out, "bagging", combine("average", probs["dev"]), combine("average", probs["test"]), labels,
                ["bagging"], run.summaries())
    if "boosting" in methods:
        alphas, probs, dirs, summaries = boost(cfg, source, rows, seeds, workdir / "boosting")
        out["combiners"]["boosting"] = {"alphas": alphas}
        _record(out, "boosting", samme(probs["dev"], alphas), samme(probs["test"], alphas), labels, dirs, summaries)
    for r in out["methods"].values():
        r["beats_single"] = bool(r["test_accuracy"] > out["single"]["dev_selected"])
    names = list(out["methods"])
    out["chosen"] = max(names, key=lambda m: (out["methods"][m]["dev_accuracy"], -names.index(m)))
    atomic_write_json(workdir / ENSEMBLE_FILE, out)
    atomic_write_text(workdir / "ensemble.md", _table(out))
    return out


def _seed_ensembles(out: dict[str, Any], cfg: Config, source: Source, rows: dict[str, np.ndarray],
                    labels: dict[str, np.ndarray], methods: Sequence[str], workdir: pathlib.Path) -> None:
    """average, vote and stacking: one program of seed-members, combined three ways."""
    members = [Member(f"seed {s}", s, rows["train"], rows["dev"], rows["test"]) for s in out["seeds"]]
    run = run_program(cfg, source, members, workdir / "seeds")
    probs = {s: run.program.probabilities(rows[s], run.program.best_params) for s in ("dev", "test")}
    for method in ("average", "vote"):
        if method in methods:
            _record(out, method, combine(method, probs["dev"]), combine(method, probs["test"]), labels, ["seeds"],
                    run.summaries())
    if "stacking" in methods:
        weights, bias = fit_stacking(probs["dev"], labels["dev"])
        out["combiners"]["stacking"] = {"weights": weights.tolist(), "bias": bias.tolist()}
        _record(out, "stacking", cross_fit_stacking(probs["dev"], labels["dev"]),
                apply_stacking(probs["test"], weights, bias), labels, ["seeds"], run.summaries())


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


def _features(probs: np.ndarray) -> np.ndarray:
    """<float32>[n, K * C] log-probabilities, member-major."""
    return np.log(np.clip(probs, _EPS, 1.0)).transpose(1, 0, 2).reshape(probs.shape[1], -1)


def fit_stacking(probs: np.ndarray, labels: np.ndarray, l2: float = 1e-2, steps: int = 200
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A multinomial logistic regression (L2-penalised, L-BFGS) from members' log-probabilities to the label.

    Returns: (weights <float32>[K * C, C], bias <float32>[C]).
    """
    w, b = _fit_logistic(jnp.asarray(_features(probs)), jnp.asarray(labels), jnp.float32(l2),
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
    return (_features(probs) @ weights + bias).argmax(-1)


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


def boost(cfg: Config, source: Source, rows: dict[str, np.ndarray], seeds: Sequence[int], workdir: pathlib.Path
          ) -> tuple[list[float], dict[str, np.ndarray], list[str], list[dict[str, Any]]]:
    """SAMME rounds (see the module docstring). Returns (alphas, {"dev", "test": <float32>[rounds, n, C]},
    round workdirs relative to the ensemble's, round summaries)."""
    train_labels = source.labels[rows["train"]]
    n, c = len(train_labels), len(source.label_names)
    weights = np.ones(n, np.float64)
    alphas: list[float] = []
    probs: dict[str, list[np.ndarray]] = {"dev": [], "test": []}
    dirs, summaries = [], []
    for m, seed in enumerate(seeds):
        member = Member(f"round {m}", seed, rows["train"], rows["dev"], rows["test"],
                        weights=(weights * n / weights.sum()).astype(np.float32))
        run = run_program(cfg, source, [member], workdir / f"round-{m}")
        dirs.append(f"boosting/round-{m}")
        summaries += run.summaries()
        for s in ("dev", "test"):
            probs[s].append(run.program.probabilities(rows[s], run.program.best_params)[0])
        wrong = run.program.probabilities(rows["train"], run.program.best_params)[0].argmax(-1) != train_labels
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


# -- prediction from an ensemble workdir ----------------------------------------------------------------------
def is_ensemble(workdir: str | pathlib.Path) -> bool:
    return (pathlib.Path(workdir) / ENSEMBLE_FILE).is_file()


class EnsemblePredictor:
    """Predicts with the chosen ensemble of an `jaxcnn ensemble` workdir (same interface as `Predictor`).

    Attributes:
      method: the combiner. encoder, label_names: the members' (shared) text encoding and classes.
    """

    def __init__(self, method: str, combiner: dict[str, Any], encoder, label_names: list[str],
                 programs: list[tuple[Any, Any, Any]]):
        self.method, self.combiner, self.encoder, self.label_names = method, combiner, encoder, label_names
        self._programs = programs

    @classmethod
    def from_workdir(cls, workdir: str | pathlib.Path) -> EnsemblePredictor:
        workdir = pathlib.Path(workdir)
        path = workdir / ENSEMBLE_FILE
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            method = info["chosen"]
            combiner = info["combiners"].get(method, {})
            dirs = info["programs"][method]
        except (OSError, ValueError, KeyError) as e:
            raise WorkdirError(f"{path}: not a readable ensemble description ({e})") from None
        programs, encoder, labels = [], None, None
        for d in dirs:
            forward, params, model_state, encoder, labels = _load_program(workdir / d)
            probs = jax.jit(jax.vmap(lambda p, s, ids, f=forward: jax.nn.softmax(
                f({"params": p, **s}, {"ids": ids}, train=False, rng=None, mutable=False), -1),
                in_axes=(0, 0, None)))
            programs.append((probs, params, model_state))
        return cls(method, combiner, encoder, labels, programs)

    def member_probabilities(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """<float32>[K, len(texts), C] every member's class probabilities."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            chunk = list(texts[start:start + batch_size])
            # Padded to `batch_size` rows: one compiled shape whatever the number of texts.
            ids = np.zeros((batch_size, self.encoder.length), np.int32)
            ids[: len(chunk)] = self.encoder.encode(chunk).ids
            probs = [fn(params, state, ids) for fn, params, state in self._programs]
            chunks.append(np.concatenate([np.asarray(p) for p in probs])[:, : len(chunk)])
        if not chunks:
            return np.zeros((sum(jax.tree.leaves(p)[0].shape[0] for _, p, _ in self._programs), 0,
                             len(self.label_names)), np.float32)
        return np.concatenate(chunks, axis=1)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """<float32>[n, C]: class scores of the ensemble, whose argmax is its prediction (probabilities for
        average, bagging and stacking; vote shares, ties broken by the mean probability, for vote; normalised
        alpha-weighted votes for boosting)."""
        probs = self.member_probabilities(texts, batch_size)
        c = probs.shape[-1]
        if self.method in ("average", "bagging"):
            return probs.mean(0)
        if self.method == "vote":
            votes = np.stack([np.bincount(p, minlength=c) for p in probs.argmax(-1).T]).astype(np.float64)
            return (votes + 0.5 * probs.mean(0)) / (probs.shape[0] + 0.5)
        if self.method == "stacking":
            logits = _features(probs) @ np.asarray(self.combiner["weights"]) + np.asarray(self.combiner["bias"])
            return np.asarray(jax.nn.softmax(logits, -1))
        alphas = self.combiner.get("alphas", [1.0] * probs.shape[0])
        votes = np.zeros(probs.shape[1:])
        for a, hits in zip(alphas, probs.argmax(-1)):
            votes += a * np.eye(c)[hits]
        return votes / votes.sum(-1, keepdims=True)

    def predict_stream(self, texts: Iterable[str], batch_size: int = 256) -> Iterator[dict[str, Any]]:
        """One record per text: {"text", "label", "probabilities": {label: score}}, `batch_size` texts at a time."""
        it = iter(texts)
        while chunk := [t for _, t in zip(range(batch_size), it)]:
            scores = self.predict_proba(chunk, batch_size)
            for text, p in zip(chunk, scores):
                yield {"text": text, "label": self.label_names[int(np.argmax(p))],
                       "probabilities": {n: float(q) for n, q in zip(self.label_names, p)}}

    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[dict[str, Any]]:
        return list(self.predict_stream(texts, batch_size))


def _load_program(workdir: pathlib.Path):
    """(forward, stacked best params, stacked model state, encoder, label names) of a MultiRun workdir."""
    from jaxcnn.configs import Config

    with CheckpointManager(workdir / "checkpoints", best_metric=None, read_only=True) as ckpt:
        meta = ckpt.read_meta()
        cfg = Config.from_dict(meta["config"])
        vocab = data_lib.Vocabulary.from_dict(meta["vocab"])
        encoder = data_lib.TextEncoder.from_config(meta["encoder"], vocab)
        labels = list(meta["label_names"])
        data = text_task.TextData(encoder, labels, {})
        abstract = abstract_saveable(cfg, data, meta["members"], meta.get("embed_dim"))
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), abstract)
        restored = ckpt.restore_latest(abstract)
    if restored is None:
        raise WorkdirError(f"{workdir / 'checkpoints'}: holds no finished checkpoint")
    _, saved, _ = restored
    embed_dim = meta.get("embed_dim")
    model = text_task.build_model(cfg, len(vocab), len(labels), embed_dim)
    return text_task.make_forward(model), saved["best_params"], saved["train"]["model_state"], encoder, labels

