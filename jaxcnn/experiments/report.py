"""Aggregates over members, markdown tables, and the per-seed dot plot against the paper's numbers."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Kim (2014) Table 2, test accuracy in % (user-needs.md 2.1).
KIM_2014 = {
    "mr": {"rand": 76.1, "static": 81.0, "non-static": 81.5, "multichannel": 81.1},
    "sst1": {"rand": 45.0, "static": 45.5, "non-static": 48.0, "multichannel": 47.4},
    "sst2": {"rand": 82.7, "static": 86.8, "non-static": 87.2, "multichannel": 88.1},
    "subj": {"rand": 89.6, "static": 93.0, "non-static": 93.4, "multichannel": 93.2},
    "trec": {"rand": 91.2, "static": 92.8, "non-static": 93.6, "multichannel": 92.2},
    "cr": {"rand": 79.8, "static": 84.7, "non-static": 84.3, "multichannel": 85.0},
    "mpqa": {"rand": 83.4, "static": 89.6, "non-static": 89.5, "multichannel": 89.4},
}
# harvardnlp/sent-conv-torch README, same protocol (user-needs.md 2.4).
TORCH_PORT = {
    "mr": {"rand": 75.9, "static": 80.5, "non-static": 81.3, "multichannel": 80.8},
    "sst1": {"rand": 42.2, "static": 44.8, "non-static": 46.7, "multichannel": 44.6},
    "sst2": {"rand": 83.5, "static": 85.6, "non-static": 87.0, "multichannel": 87.1},
    "subj": {"rand": 89.2, "static": 93.0, "non-static": 93.4, "multichannel": 93.2},
    "trec": {"rand": 88.2, "static": 91.8, "non-static": 92.8, "multichannel": 91.8},
    "cr": {"rand": 78.3, "static": 83.3, "non-static": 84.4, "multichannel": 83.7},
    "mpqa": {"rand": 84.6, "static": 89.6, "non-static": 89.7, "multichannel": 89.6},
}


def dataset_name(cfg) -> str:
    """The registry name, or the training file for own data (as in summary.json)."""
    return cfg.data.dataset if cfg.data.train_file is None else cfg.data.train_file


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """mean, std (sample, n-1; 0 for one value), min, max and n."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not len(v):
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "min": float(v.min()),
            "max": float(v.max()), "n": int(len(v))}


def aggregate(members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Test accuracy over members; with folds, each seed's score is its mean over folds (Kim's CV figure).

    Returns:
      {"per_seed": {seed: score}, "seeds": stats over seeds, "members": stats over all members,
       "per_fold": {fold: stats over seeds} (CV only)}.
    """
    by_seed: dict[int, list[float]] = {}
    by_fold: dict[int, list[float]] = {}
    for m in members:
        by_seed.setdefault(int(m["seed"]), []).append(m["test_accuracy"])
        if m.get("fold") is not None:
            by_fold.setdefault(int(m["fold"]), []).append(m["test_accuracy"])
    per_seed = {s: float(np.mean(v)) for s, v in sorted(by_seed.items())}
    out: dict[str, Any] = {"per_seed": per_seed, "seeds": stats(list(per_seed.values())),
                           "members": stats([m["test_accuracy"] for m in members])}
    if by_fold:
        out["per_fold"] = {f: stats(v) for f, v in sorted(by_fold.items())}
    return out


def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def mean_std(s: Mapping[str, Any]) -> str:
    if s.get("mean") is None:
        return "-"
    return f"{pct(s['mean'])} ± {pct(s['std'])}" if s.get("n", 0) > 1 else pct(s["mean"])


def member_table(members: Sequence[Mapping[str, Any]], columns: Sequence[str] = ("name", "best_epoch",
                                                                                  "dev_accuracy",
                                                                                  "test_accuracy")) -> str:
    """A markdown table with one row per member (accuracies in %)."""
    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |", "|" + "---|" * len(columns)]
    for m in members:
        cells = [pct(m.get(c), 2) if c.endswith("accuracy") else str(m.get(c, "-")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stats_line(s: Mapping[str, Any]) -> str:
    return (f"mean {pct(s['mean'], 2)} ± {pct(s['std'], 2)} (min {pct(s['min'], 2)}, max {pct(s['max'], 2)}, "
            f"n = {s['n']})")


def plot_seed_dots(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str = "") -> None:
    """One column per (dataset, variant): a dot per seed (its score), a bar at Kim (2014)'s value and a dashed
    one at the Torch port's; a row's `member_scores` (each fold and seed on its own), when there are more of them
    than seeds, as faint rings behind. Where Kim has a value, a second panel shows the same points as ours minus
    Kim in points: on one axis from 40 to 95 a 2-point gap is hard to read.

    Args:
      rows: [{"dataset", "variant", "per_seed": {seed: accuracy in [0, 1]}, optional "member_scores":
        [accuracy in [0, 1]]}].
    """
    from matplotlib.figure import Figure

    from jaxcnn.train.plots import _save_png

    refs = [[(table.get(r["dataset"], {}).get(r["variant"]), style, name)
             for table, style, name in ((KIM_2014, "-", "Kim (2014)"), (TORCH_PORT, "--", "sent-conv-torch"))]
            for r in rows]
    kims = [row_refs[0][0] for row_refs in refs]
    with_kim = any(k is not None for k in kims)
    fig = Figure(figsize=(max(4.0, 1.3 * len(rows) + 1.5), 7.4 if with_kim else 4.2))
    axes = fig.subplots(2, 1, sharex=True) if with_kim else [fig.subplots()]
    for panel, ax in enumerate(axes):
        labelled: set[str] = set()

        def label(name: str) -> str | None:
            if name in labelled:
                return None
            labelled.add(name)
            return name

        for i, (r, kim, row_refs) in enumerate(zip(rows, kims, refs)):
            if panel == 1 and kim is None:
                continue
            shift = kim if panel == 1 else 0.0
            members = [100 * v - shift for v in r.get("member_scores", ())]
            scores = [100 * v - shift for v in r["per_seed"].values()]
            if len(members) > len(scores):
                jitter = np.linspace(-0.22, 0.22, len(members))
                ax.scatter(i + jitter, members, s=14, facecolors="none", edgecolors="tab:blue", alpha=0.45,
                           linewidths=0.8, zorder=2, label=label("each fold and seed"))
            jitter = np.linspace(-0.12, 0.12, len(scores)) if len(scores) > 1 else np.zeros(1)
            ax.scatter(i + jitter, scores, s=22, color="tab:blue", zorder=3, label=label("ours, one dot per seed"))
            for ref, style, name in row_refs:
                if ref is not None:
                    ax.hlines(ref - shift, i - 0.3, i + 0.3, colors="tab:red" if style == "-" else "tab:gray",
                              linestyles=style, label=label(name))
        ax.grid(axis="y", alpha=0.3)
        if panel == 0:
            ax.legend(fontsize=8)
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(title or "test accuracy per seed vs the paper")
        else:
            ax.axhline(0.0, color="tab:red", linewidth=0.6, alpha=0.5)
            ax.set_ylabel("ours - Kim (2014), points")
    axes[-1].set_xticks(range(len(rows)), [f"{r['dataset']}\n{r['variant']}" for r in rows])
    fig.tight_layout()
    _save_png(fig, path)
