"""Why a sentence got its label: each logit of Kim's CNN split exactly over the n-grams that decided it.

With max, k-max or average pooling over time and a linear head, at evaluation time

    logit_c = b_c + sum over pooled slots s of W[s, c] * scale * pooled_s,   pooled_s = sum_t A[s, t] * h_f(s)(t)

where `A` selects the winning window of each filter (max: one; k-max: k; average: every real window, 1/n each)
and `scale` is Kim's test-time dropout factor (1 - p; 1 for inverted dropout). So every logit is the head's bias
plus the contributions of the windows (n-grams) that won at least one filter: `"method": "exact"`.

Within a window the convolution is linear, `pre_f = b_f + sum_j x[t + j] . K_f[j]`, and `h = act(pre)`; a
window's contribution splits over its tokens in proportion (`act(pre) / pre`, 1 for a positive ReLU), with what
no token carries (the filters' own bias, and act(0) where pre is 0) kept apart as `filter_bias`.

A head that is not linear (hidden layers, normalization) is explained by integrated gradients from the zero
embedding (every position's vector zero, the sentence's positions kept): token attributions that add up, with
the logits at the zero embedding as `bias`, to the logits up to the integration error, which shrinks with
`steps` (`"method": "integrated_gradients"`). Each token is then its own n-gram.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import layers
from jaxcnn.layers.pool import k_max_positions
from jaxcnn.models.text_cnn import TextCNN

EXACT, INTEGRATED = "exact", "integrated_gradients"
IG_STEPS = 64


def is_exact(model: TextCNN) -> bool:
    """Whether the exact decomposition applies: pooled features straight into the linear head."""
    return not model.hidden and model.norm == "none"


def embedded(params: Mapping[str, Any], ids: jax.Array, pad_id: int = 0) -> jax.Array:
    """<float32>[batch, length, dim] what the convolution sees: the tables' rows summed (multichannel: each filter
    sees both channels, summed), zero at padding."""
    tables = [params[name]["embedding"] for name in ("embed", "embed_static") if name in params]
    x = functools.reduce(jnp.add, [jnp.take(t, ids, axis=0) for t in tables])
    return jnp.where((ids != pad_id)[..., None], x, 0.0)


def _winners(model: TextCNN, h: jax.Array, window_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(<int32>[batch, K, F] the windows that max (K = 1) or k-max (K = k) pooling takes, as the model pools;
    <bool>[batch, K, F] whether a slot holds a real window (a row with fewer has none there))."""
    valid = window_mask[..., None]
    if model.pooling == "max":
        best = jnp.argmax(jnp.where(valid, h, -jnp.inf), axis=1)[:, None]  # the first maximum, as jnp.max
        return best, jnp.broadcast_to(jnp.any(valid, axis=1)[:, None], best.shape)
    keys = jnp.swapaxes(k_max_positions(h, model.k, window_mask), 1, 2)  # [batch, k, F], as layers.k_max_pool
    ok = keys < h.shape[1]
    return jnp.where(ok, keys, 0), ok


def _place(values: jax.Array, place: jax.Array, length: int, classes: int) -> jax.Array:
    """<float>[B, length, C]: `values` [B, X, F, C] summed over filters into the positions `place` [B, X, F]."""
    place = jnp.broadcast_to(place, values.shape[:-1])
    rows = jnp.broadcast_to(jnp.arange(place.shape[0])[:, None, None], place.shape)
    return jnp.zeros((place.shape[0], length, classes), values.dtype).at[rows, place].add(values)


def _selection(model: TextCNN, h: jax.Array, window_mask: jax.Array) -> jax.Array:
    """<float32>[batch, k, T, F]: how much each window's activation enters each pooled slot (as the model pools)."""
    batch, length, maps = h.shape
    valid = window_mask[..., None]
    if model.pooling == "avg":
        n = jnp.maximum(window_mask.sum(1), 1)[:, None, None, None]
        return jnp.broadcast_to(valid[:, None] / n, (batch, 1, length, maps)).astype(h.dtype)
    if model.pooling == "max":
        best = jnp.argmax(jnp.where(valid, h, -jnp.inf), axis=1)  # [batch, F]: the first maximum, as jnp.max
        onehot = jnp.arange(length)[None, :, None] == best[:, None, :]
        return (onehot & jnp.any(valid, axis=1)[:, None, :])[:, None].astype(h.dtype)
    keys = k_max_positions(h, model.k, window_mask)  # [batch, F, k], as layers.k_max_pool picks
    onehot = (keys[..., None] == jnp.arange(length)) & (keys[..., None] < length)  # [batch, F, k, T]
    return jnp.transpose(onehot, (0, 2, 3, 1)).astype(h.dtype)


def exact(model: TextCNN, params: Mapping[str, Any], ids: jax.Array, folded: jax.Array | None = None
          ) -> dict[str, jax.Array]:
    """The exact decomposition of a batch (`exact_jit`: the same, jitted with the model static).

    Args:
      model: a `TextCNN` with `is_exact(model)`. params: its parameters. ids: <int32>[batch, length].
      folded: optional `fold_embeddings(params, model.windows)` (what prediction precomputes): every tap of a
        token is then a row lookup rather than a matrix multiply.

    Returns:
      logits <float32>[B, C]; bias [C] (the head's); windows: {width: <float32>[B, length - width + 1, C]} each
      window's contribution (0 for windows that won nothing); tokens [B, length, C]; filter_bias [B, C];
      such that for every row, bias + sum of all windows' contributions == logits, and
      sum of tokens + filter_bias == sum of windows.
    """
    mask = ids != model.pad_id
    kernels = [params["bank"][f"conv_w{w}"]["kernel"] for w in model.windows]
    if folded is None:  # every width's taps of every token from one matrix multiply
        projected = jnp.einsum("bld,dk->blk", embedded(params, ids, model.pad_id), layers.bank_taps(kernels),
                               precision=jax.lax.Precision.HIGHEST)
    else:
        projected = jnp.take(folded, ids, axis=0)
    projected = jnp.where(mask[..., None], projected, 0.0)  # [B, L, sum(widths) * F]
    head_w, head_b = params["head"]["kernel"], params["head"]["bias"]
    scale = (1.0 - model.dropout) if model.dropout_scaling == "kim" else 1.0
    act = layers.get_activation(model.activation)
    k = model.k if model.pooling == "kmax" else 1
    batch, length = ids.shape
    classes = head_w.shape[1]
    windows, tokens, filter_bias, offset = {}, jnp.zeros((batch, length, classes)), jnp.zeros((batch, classes)), 0
    column = 0
    hi = jax.lax.Precision.HIGHEST
    for width, kernel in zip(model.windows, kernels):
        conv_b = params["bank"][f"conv_w{width}"]["bias"]  # [F]
        maps = kernel.shape[-1]
        span = length - width + 1
        # tap(j)[b, t, f] = x[b, t + j] . kernel[j, :, f]
        tap = [projected[:, j:j + span, column + j * maps: column + (j + 1) * maps] for j in range(width)]
        column += width * maps
        pre = sum(tap) + conv_b  # [B, T, F]
        h = act(pre)
        window_mask = layers.conv_output_mask(mask, width)
        w = head_w[offset:offset + k * maps].reshape(k, maps, classes) * scale
        offset += k * maps
        if model.pooling == "avg":  # every real window counts, 1/n each
            select = _selection(model, h, window_mask)[:, 0]  # [B, T, F]
            place, weight = jnp.arange(span)[None, :, None], select
            h_at, pre_at = h, pre
            tap_at = tap
            w_at = w[0][None, None]  # [1, 1, F, C]
        else:  # the winning windows only: [B, K, F] positions (K = 1 for max, k for k-max)
            place, ok = _winners(model, h, window_mask)
            weight = ok.astype(h.dtype)
            h_at, pre_at = (jnp.take_along_axis(a, place, axis=1) for a in (h, pre))
            # tap(j) at the winners, gathered from the projected rows themselves (no copy of a tap's slice)
            flat = projected.reshape(batch, -1)
            cols = column - width * maps + jnp.arange(maps)
            tap_at = [jnp.take_along_axis(flat, ((place + j) * projected.shape[-1] + cols + j * maps).reshape(
                batch, -1), axis=1).reshape(place.shape) for j in range(width)]
            w_at = w[None]  # [1, K, F, C]
        unit = (weight * h_at)[..., None] * w_at  # each (window, filter)'s contribution to each class
        ratio = jnp.where(pre_at != 0, h_at / jnp.where(pre_at != 0, pre_at, 1.0), 0.0)
        windows[width] = _place(unit, place, span, classes)
        for j in range(width):
            tokens = tokens + _place((weight * ratio * tap_at[j])[..., None] * w_at, place + j, length, classes)
        rest = weight * (h_at - ratio * (pre_at - conv_b))  # ratio * conv bias, or act(0) where pre is 0
        filter_bias = filter_bias + jnp.einsum("bxf,bxfc->bc", rest, jnp.broadcast_to(w_at, unit.shape),
                                               precision=hi)
    total = sum(v.sum(1) for v in windows.values())
    return {"logits": head_b + total, "bias": head_b, "windows": windows, "tokens": tokens,
            "filter_bias": filter_bias}


exact_jit = jax.jit(exact, static_argnames=("model",))


@functools.partial(jax.jit, static_argnames=("model", "steps"))
def integrated_gradients(model: TextCNN, variables: Mapping[str, Any], ids: jax.Array, steps: int = IG_STEPS
                         ) -> dict[str, jax.Array]:
    """Integrated gradients (midpoint rule, `steps` points) from the zero embedding, for any head.

    Returns:
      logits <float32>[B, C]; bias [B, C] (the logits at the zero embedding); tokens [B, length, C], with
      bias + sum of tokens == logits up to the integration error.
    """
    params = variables["params"]
    others = {k: v for k, v in variables.items() if k != "params"}
    x = embedded(params, ids, model.pad_id)
    # One table row per position (row 0: padding), so that a gradient is per position; the rows are already the
    # channels' sum, which the trainable `embed` of a rand model reads (a static table sits behind stop_gradient).
    positional = model.clone(variant="rand", pad_id=0)
    rest = {k: v for k, v in params.items() if k not in ("embed", "embed_static")}
    positions = jnp.where(ids != model.pad_id, jnp.arange(1, ids.shape[1] + 1), 0)

    def logits_at(rows, pos):  # one example: rows [L, D]
        table = jnp.concatenate([jnp.zeros((1, rows.shape[-1]), rows.dtype), rows])
        v = {"params": {**rest, "embed": {"embedding": table}}, **others}
        return positional.apply(v, pos[None], train=False)[0]

    def one(rows, pos):
        logits = logits_at(rows, pos)

        def add(i, total):  # one point at a time: memory of one Jacobian [C, L, D], not of `steps`
            return total + jax.jacrev(logits_at)((i + 0.5) / steps * rows, pos)

        grads = jax.lax.fori_loop(0, steps, add, jnp.zeros((logits.shape[0], *rows.shape), rows.dtype))
        tokens = jnp.einsum("cld,ld->lc", grads, rows) / steps
        return logits, logits_at(jnp.zeros_like(rows), pos), tokens

    logits, bias, tokens = jax.vmap(one)(x, positions)
    return {"logits": logits, "bias": bias, "tokens": tokens}


def records(model: TextCNN, variables: Mapping[str, Any], ids: np.ndarray, texts: Sequence[str],
            tokens: Sequence[Sequence[str]], label_names: Sequence[str], steps: int = IG_STEPS,
            folded: jax.Array | None = None) -> list[dict[str, Any]]:
    """One JSON-ready record per row of `ids` (see `jaxcnn explain`); `folded` as in `exact`."""
    return finish(start(model, variables, ids, steps, folded), ids, texts, tokens, label_names)


def start(model: TextCNN, variables: Mapping[str, Any], ids: np.ndarray, steps: int = IG_STEPS,
          folded: jax.Array | None = None) -> tuple[TextCNN, dict[str, Any], str, int]:
    """Dispatch the decomposition of a batch (asynchronously: the caller can build the previous batch's records
    meanwhile); `finish` turns it into records."""
    if is_exact(model):
        return model, exact_jit(model, variables["params"], jnp.asarray(ids), folded), EXACT, steps
    return model, integrated_gradients(model, variables, jnp.asarray(ids), steps), INTEGRATED, steps


def finish(started: tuple[TextCNN, dict[str, Any], str, int], ids: np.ndarray, texts: Sequence[str],
           tokens: Sequence[Sequence[str]], label_names: Sequence[str]) -> list[dict[str, Any]]:
    """The records of a batch `start` dispatched."""
    model, out, method, steps = started
    out = jax.device_get(out)
    with collector_paused():
        return _build(model, ids, texts, tokens, list(label_names), out, method, steps)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """The records are tens of thousands of small acyclic dicts and lists per batch; the cyclic collector would
    scan them, and everything else the process holds, over and over while they are built (measured: 2/3 of
    `explain`'s time on 1,000 MR sentences). Paused for that span only, and restored as it was (nested: the
    outermost restores)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _build(model: TextCNN, ids: np.ndarray, texts: Sequence[str], tokens: Sequence[Sequence[str]],
           names: list[str], out: Mapping[str, Any], method: str, steps: int) -> list[dict[str, Any]]:
    """The records of a batch. The array work is done for the whole batch at once; the loop only assembles."""
    logits = np.asarray(out["logits"], np.float64)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    preds = logits.argmax(-1)
    real = ids != model.pad_id
    # Spans (n-grams) of the whole batch: row, start, end, contributions; in each row sorted by contribution to
    # the row's label, ties in the order of the widths and then of the starts.
    if method == EXACT:
        parts = []
        for order, (width, contrib) in enumerate(out["windows"].items()):
            row, start = np.nonzero(np.any(contrib != 0, axis=-1))
            parts.append((row, start, start + width, contrib[row, start], np.full(len(row), order)))
        row, start, end, values, order = (np.concatenate(arrays) for arrays in zip(*parts))
    else:
        row, start = np.nonzero(real)
        end, values, order = start + 1, out["tokens"][row, start], np.zeros(len(row), int)
    sort = np.lexsort((start, order, -values[np.arange(len(row)), preds[row]], row))
    row, start, end, values = row[sort], start[sort].tolist(), end[sort].tolist(), values[sort].tolist()
    cuts = np.searchsorted(row, np.arange(len(texts) + 1)).tolist()
    token_row, token_pos = np.nonzero(real)
    token_values = out["tokens"][token_row, token_pos].tolist()
    token_cuts = np.searchsorted(token_row, np.arange(len(texts) + 1)).tolist()
    token_pos = token_pos.tolist()
    logits, probs, preds = logits.tolist(), probs.tolist(), preds.tolist()
    bias = np.asarray(out["bias"], np.float64).tolist()
    filter_bias = out["filter_bias"].tolist() if method == EXACT else None

    width = ids.shape[1]
    result = []
    for i, text in enumerate(texts):
        positions = token_pos[token_cuts[i]:token_cuts[i + 1]]
        words = dict(zip(positions, tokens[i]))  # the token at each real position of the row
        shown = [words.get(p, "<pad>") for p in range(width)]
        record = {"text": text, "tokens": [words.get(p) for p in positions], "label": names[preds[i]],
                  "probabilities": dict(zip(names, probs[i])), "logits": dict(zip(names, logits[i])),
                  "bias": dict(zip(names, bias if method == EXACT else bias[i])),
                  "ngrams": [{"start": a, "end": b, "tokens": shown[a:b],
                              "contributions": dict(zip(names, c))}
                             for a, b, c in zip(start[cuts[i]:cuts[i + 1]], end[cuts[i]:cuts[i + 1]],
                                                values[cuts[i]:cuts[i + 1]])],
                  "token_contributions": [{"position": p, "token": words.get(p), "contributions": dict(zip(names, c))}
                                          for p, c in zip(positions, token_values[token_cuts[i]:token_cuts[i + 1]])],
                  "method": method}
        if method == EXACT:
            record["filter_bias"] = dict(zip(names, filter_bias[i]))
        else:
            record["steps"] = steps
        result.append(record)
    return result


@functools.partial(jax.jit, static_argnames=("model",))
def _filter_maxima(model: TextCNN, params: Mapping[str, Any], ids: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    """Per width: (<float32>[B, F] each filter's largest activation over the row's real windows, <int32>[B, F]
    its window's start); -inf where the row has no real window."""
    mask = ids != model.pad_id
    x = embedded(params, ids, model.pad_id)
    act = layers.get_activation(model.activation)
    out = []
    for width in model.windows:
        conv = params["bank"][f"conv_w{width}"]
        h = act(jax.lax.conv_general_dilated(x, conv["kernel"], (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"),
                                             precision=jax.lax.Precision.HIGHEST) + conv["bias"])
        h = jnp.where(layers.conv_output_mask(mask, width)[..., None], h, -jnp.inf)
        out.append((h.max(1), h.argmax(1)))
    return out


class FilterReport:
    """Accumulates, batch by batch, what each filter of a Kim CNN learned (`jaxcnn filters`): the n-grams that
    activate each filter most (Jacovi et al. 2018), and per class the n-grams whose exact contributions add up to
    the most over the inputs."""

    def __init__(self, model: TextCNN, label_names: Sequence[str], top: int = 5):
        self.model, self.names, self.top = model, list(label_names), top
        self.best: dict[tuple[int, int], dict[str, float]] = {}  # (width, filter) -> n-gram -> activation
        self.totals = {name: {} for name in self.names}  # class -> n-gram -> [sum, count]

    def add(self, params: Mapping[str, Any], ids: np.ndarray, tokens: Sequence[Sequence[str]],
            folded: jax.Array | None = None) -> None:
        words = [_row_tokens(row, t, self.model.pad_id) for row, t in zip(ids, tokens)]
        gram = lambda i, s, w: " ".join(x if x is not None else "<pad>" for x in words[i][s:s + w])  # noqa: E731
        maxima = jax.device_get(_filter_maxima(self.model, params, jnp.asarray(ids)))
        for width, (values, starts) in zip(self.model.windows, maxima):
            for f in range(values.shape[1]):
                seen = self.best.setdefault((width, f), {})
                for i in np.argsort(-values[:, f])[: self.top]:
                    if np.isfinite(values[i, f]):
                        text = gram(i, int(starts[i, f]), width)
                        seen[text] = max(seen.get(text, -np.inf), float(values[i, f]))
                if len(seen) > self.top:  # keep the best `top`, so memory stays bounded
                    self.best[(width, f)] = dict(sorted(seen.items(), key=lambda kv: -kv[1])[: self.top])
        out = jax.device_get(exact_jit(self.model, params, jnp.asarray(ids), folded))
        for width, contrib in out["windows"].items():
            for i, start in zip(*np.nonzero(np.any(contrib != 0, axis=-1))):
                text = gram(i, int(start), width)
                for c, name in enumerate(self.names):
                    total = self.totals[name].setdefault(text, [0.0, 0])
                    total[0] += float(contrib[i, start, c])
                    total[1] += 1

    def result(self) -> dict[str, Any]:
        """{"filters": [{"width", "filter", "top": [{"ngram", "activation"}]}], "classes": {label: [{"ngram",
        "contribution" (summed over the inputs), "count" (inputs where it won a filter)}]}}."""
        filters = [{"width": w, "filter": f, "top": [{"ngram": g, "activation": a}
                                                    for g, a in sorted(seen.items(), key=lambda kv: -kv[1])]}
                   for (w, f), seen in sorted(self.best.items())]
        classes = {name: [{"ngram": g, "contribution": s, "count": n}
                          for g, (s, n) in sorted(totals.items(), key=lambda kv: -kv[1][0])[: self.top]]
                   for name, totals in self.totals.items()}
        return {"filters": filters, "classes": classes}


def _row_tokens(row_ids: np.ndarray, tokens: Sequence[str], pad_id: int) -> list[str | None]:
    """The token string at each position of an encoded row (None at padding), in order."""
    out: list[str | None] = [None] * len(row_ids)
    it = iter(tokens)
    for p in np.flatnonzero(row_ids != pad_id):
        out[p] = next(it, None)
    return out
