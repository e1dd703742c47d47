"""Explanations for people: a sentence with its deciding n-grams marked, and a self-contained HTML page."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

_BOLD_GREEN, _BOLD_RED, _RESET = "\x1b[1;32m", "\x1b[1;31m", "\x1b[0m"


def text_line(record: Mapping[str, Any], colour: bool = False, top: int = 3) -> str:
    """`label (p) | the sentence with the `top` n-grams that most raised the predicted label's logit marked`:
    [[for it]] when piped, green (for) / red (against) on a terminal."""
    label = record["label"]
    positions = {t["position"]: t["token"] for t in record["token_contributions"]}
    marks: dict[int, int] = {}
    for gram in record["ngrams"][:top]:
        sign = 1 if gram["contributions"][label] >= 0 else -1
        for p in range(gram["start"], gram["end"]):
            if p in positions:
                marks.setdefault(p, sign)
    words, open_ = [], 0
    for p in sorted(positions):
        sign = marks.get(p, 0)
        if colour:
            words.append(f"{_BOLD_GREEN if sign > 0 else _BOLD_RED}{positions[p]}{_RESET}" if sign else positions[p])
            continue
        word = positions[p]
        if sign and not open_:
            word = ("[[" if sign > 0 else "{{") + word
        if sign and (p + 1 not in marks or marks[p + 1] != sign):
            word += "]]" if sign > 0 else "}}"
            open_ = 0
        elif sign:
            open_ = sign
        words.append(word)
    return f"{label} ({record['probabilities'][label]:.3f}) | {' '.join(words) or '(empty)'}"


def _shade(value: float, scale: float) -> str:
    alpha = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    colour = "34, 139, 34" if value >= 0 else "200, 40, 40"
    return f"background: rgba({colour}, {alpha:.3f})"


def html_page(records: Sequence[Mapping[str, Any]], label_names: Sequence[str]) -> str:
    """One page, no external assets: for each sentence its probabilities, and per class a row of its tokens shaded
    by their contribution to that class's logit (green raises it, red lowers it; the strongest token of the page
    is full colour)."""
    scale = max((abs(v) for r in records for t in r["token_contributions"] for v in t["contributions"].values()),
                default=0.0)
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>jaxcnn explain</title><style>",
             "body{font-family:sans-serif;max-width:70em;margin:2em auto}"
             ".s{border-bottom:1px solid #ccc;padding:.8em 0}.t{padding:.1em .25em;margin:0 .05em;border-radius:3px}"
             "td{padding:.2em .5em;vertical-align:top}.p{color:#555;font-size:.9em}</style></head><body>",
             "<h1>Why each sentence got its label</h1><p class='p'>Each row: the tokens shaded by their contribution "
             "to that class's logit (green: for, red: against); method and the head's bias below each sentence.</p>"]
    for r in records:
        probs = ", ".join(f"{html.escape(n)} {r['probabilities'][n]:.3f}" for n in label_names)
        parts.append(f"<div class='s'><div><b>{html.escape(r['label'])}</b> <span class='p'>({probs})</span></div>"
                     f"<div>{html.escape(r['text'])}</div><table>")
        for name in label_names:
            cells = "".join(f"<span class='t' style='{_shade(t['contributions'][name], scale)}' "
                            f"title='{t['contributions'][name]:+.4f}'>{html.escape(str(t['token']))}</span>"
                            for t in r["token_contributions"])
            parts.append(f"<tr><td>{html.escape(name)}</td><td>{cells or '<i>(no tokens)</i>'}</td></tr>")
        bias = ", ".join(f"{html.escape(n)} {r['bias'][n]:+.3f}" for n in label_names)
        parts.append(f"</table><div class='p'>{html.escape(r['method'])}; bias: {bias}</div></div>")
    parts.append("</body></html>")
    return "".join(parts)


def filters_markdown(report: Mapping[str, Any], filters: int = 20) -> str:
    """`jaxcnn filters` as markdown: per class the n-grams that add the most to its logit, then the first
    `filters` filters with the n-grams that activate each most."""
    lines = ["# What the filters learned", "", "## The n-grams that add the most to each class's logit", "",
             "| class | n-gram | summed contribution | inputs |", "|---|---|---|---|"]
    for name, grams in report["classes"].items():
        lines += [f"| {_md(name)} | {_md(g['ngram'])} | {g['contribution']:+.3f} | {g['count']} |" for g in grams]
    lines += ["", f"## The n-grams that activate each filter most (first {filters} of {len(report['filters'])})", "",
              "| width | filter | n-grams (activation) |", "|---|---|---|"]
    for f in report["filters"][:filters]:
        grams = "; ".join(f"{_md(g['ngram'])} ({g['activation']:.2f})" for g in f["top"])
        lines.append(f"| {f['width']} | {f['filter']} | {grams} |")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def plot_filters(report: Mapping[str, Any], path: str) -> None:
    """A PNG: one panel per class, its top n-grams as horizontal bars of summed contribution."""
    from matplotlib.figure import Figure

    from jaxcnn.train.plots import _save_png

    classes = list(report["classes"].items())
    cols = min(3, len(classes)) or 1
    rows = -(-len(classes) // cols) or 1
    fig = Figure(figsize=(5 * cols, 0.45 * max((len(g) for _, g in classes), default=1) * rows + 1.2 * rows))
    for k, (name, grams) in enumerate(classes):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.barh([g["ngram"] for g in grams][::-1], [g["contribution"] for g in grams][::-1], color="tab:green")
        ax.set_title(name)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlabel("summed contribution to the logit")
    fig.tight_layout()
    _save_png(fig, path)
