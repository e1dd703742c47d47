"""Validation shared by the layers: a bad attribute or input becomes a one-line `ConfigError` naming the culprit.

Shapes are static under `jax.jit`, so every check here runs once, at trace time, and costs nothing per step.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import jax
import numpy as np

from jaxcnn.errors import ConfigError

Pair = tuple[int, int]
# What a layer accepts as `padding`; see `canonical_padding`.
PaddingLike = str | int | Sequence[int | Sequence[int]]
# What `canonical_padding` returns: a mode name, or one explicit (lo, hi) pair per spatial dim.
Padding = str | tuple[Pair, ...]

_MODES = ("VALID", "SAME", "CAUSAL")
# What fills the padded positions: PyTorch's `padding_mode` names, and what `jnp.pad` calls them.
PADDING_MODES = {"zeros": "constant", "circular": "wrap", "reflect": "reflect", "replicate": "edge"}


def _is_int(value: object) -> bool:
    # Integral admits NumPy integers; bool is one too, but `padding=True` is a mistake, not a width.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def positive_ints(value: int | Sequence[int] | None, rank: int | None, owner: str, attr: str) -> tuple[int, ...]:
    """Returns `value` as a tuple of positive ints: an int (or None, meaning 1) repeats `rank` times.

    With `rank=None` the value itself fixes the rank (an int then means rank 1), as `kernel_size` does.
    """
    if value is None:
        value = 1
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = tuple(value)
    if _is_int(value):
        value = (value,) * (1 if rank is None else rank)
    if not isinstance(value, Sequence) or not value or not all(_is_int(v) and v >= 1 for v in value):
        raise ConfigError(f"{owner}.{attr}: expected a positive int or a sequence of positive ints, got {value!r}")
    if rank is not None and len(value) != rank:
        raise ConfigError(f"{owner}.{attr}: expected {rank} value(s), one per spatial dim, got {tuple(value)!r}")
    return tuple(int(v) for v in value)


def canonical_padding(padding: PaddingLike, rank: int, owner: str, *, causal: bool = True,
                      negative: bool = False) -> Padding:
    """Canonical form of a `padding` attribute.

    Accepted: "VALID", "SAME", "CAUSAL" (any case; CAUSAL only for 1-D and when `causal`); an int p, meaning (p, p)
    on every spatial dim; for 1-D a single (lo, hi) pair; or one entry per spatial dim, each an int p or a (lo, hi)
    pair. A flat pair of ints in 2-D is therefore (p_h, p_w), as in Flax, not (lo, hi).
    Returns the upper-case mode name or a tuple of `rank` (lo, hi) pairs.
    """
    def bad() -> ConfigError:
        modes = "'VALID', 'SAME'" + (", 'CAUSAL' (1-D)" if causal else "")
        return ConfigError(f"{owner}.padding: expected {modes}, an int, or one int or (lo, hi) pair per spatial "
                           f"dim ({rank}), got {padding!r}")

    if isinstance(padding, str):
        mode = padding.upper()
        if mode not in _MODES or (mode == "CAUSAL" and not causal):
            raise bad()
        if mode == "CAUSAL" and rank != 1:
            raise ConfigError(f"{owner}.padding: CAUSAL padding is only defined for 1-D kernels, got rank {rank}")
        return mode
    if _is_int(padding):
        pairs: list = [(padding, padding)] * rank
    elif isinstance(padding, Sequence):
        entries = list(padding)
        if rank == 1 and len(entries) == 2 and all(_is_int(p) for p in entries):
            entries = [tuple(entries)]
        if len(entries) != rank:
            raise bad()
        pairs = [(p, p) if _is_int(p) else tuple(p) if isinstance(p, Sequence) else None for p in entries]
    else:
        raise bad()
    if not all(p is not None and len(p) == 2 and all(_is_int(v) for v in p) for p in pairs):
        raise bad()
    if not negative and any(v < 0 for p in pairs for v in p):
        raise ConfigError(f"{owner}.padding: explicit padding must be >= 0, got {padding!r}")
    return tuple((int(lo), int(hi)) for lo, hi in pairs)


def canonical_padding_mode(mode: str, owner: str) -> str:
    """`mode` in lower case, one of `PADDING_MODES` ("zeros", "circular", "reflect", "replicate")."""
    if not isinstance(mode, str) or mode.lower() not in PADDING_MODES:
        raise ConfigError(f"{owner}.padding_mode: expected one of {', '.join(PADDING_MODES)}, got {mode!r}")
    return mode.lower()


def flag(value: object, owner: str, attr: str) -> bool:
    """`value` if it is a bool (NumPy's included); anything else, e.g. the string "False", is a mistake."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{owner}.{attr}: expected True or False, got {value!r}")
    return bool(value)


def per_dim(padding: Padding, rank: int) -> tuple[str | Pair, ...]:
    """Splits a canonical padding into one entry per spatial dim, as the scalar helpers in `shapes` take it."""
    return (padding,) * rank if isinstance(padding, str) else padding


def check_rank(x: jax.Array, rank: int, owner: str) -> None:
    """Raises unless `x` is [batch, *spatial (rank dims), channels]."""
    if x.ndim != rank + 2:
        dims = {1: "length", 2: "height, width"}.get(rank, f"{rank} spatial dims")
        raise ConfigError(f"{owner}: expected input [batch, {dims}, channels] of rank {rank + 2}, "
                          f"got shape {tuple(x.shape)}")


def check_spatial(x: jax.Array, owner: str) -> None:
    """Raises unless `x` is [batch, *spatial, channels] with at least one spatial dim (any number of them)."""
    if x.ndim < 3:
        raise ConfigError(f"{owner}: expected input [batch, *spatial, channels] with at least one spatial dim, "
                          f"got shape {tuple(x.shape)}")


def check_mask(mask: jax.Array, shape: tuple[int, ...], owner: str) -> None:
    """Raises unless `mask` has the given [batch, *spatial] shape."""
    if tuple(mask.shape) != tuple(shape):
        raise ConfigError(f"{owner}: mask shape {tuple(mask.shape)} does not match the input's "
                          f"[batch, *spatial] shape {tuple(shape)}")
