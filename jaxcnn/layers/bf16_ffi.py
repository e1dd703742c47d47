"""bfloat16 x bfloat16 -> float32 matrix products through jaxcnn's own XLA FFI kernel (`_bf16_matmul.cc`).

XLA's CPU backend does not use the AMX matrix units of recent Intel CPUs (a bfloat16 dot runs no faster than a
float32 one), so on such a CPU `layers.mixed_matmul` (the conv bank and Kim's head under `--precision bfloat16`)
multiplies through this custom call instead, whose AMX kernel accumulates 16x16 float32 tiles. Everywhere else
(no AMX, GPU/TPU, or the extension not built) the XLA path runs.

The route is chosen by `route()`: the environment variable `JAXCNN_BF16_MATMUL` = `auto` (the default: the custom
call where its AMX kernel runs and agrees with the portable kernel on this machine, and JAX has one CPU device,
else XLA), `xla`, or `ffi` (the custom call even without AMX: its portable kernel, for tests). It is read when a
step is traced: JAX caches a function's trace, so set it before the first step.

The custom call has no partitioning rule: under a multi-device `jit` XLA gathers its operands and computes the
whole product on every device (correct, not faster); hence `auto` keeps XLA where JAX has several CPU devices.
It has no JVP rule either: gradients of gradients through `mixed_matmul` need the XLA route.

The extension is built at install time by setup.py where a C++ compiler is found, as an empty Python module (so
that tools which import every module find one) that this file loads through ctypes; nothing is registered with
XLA until a product first needs it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib.machinery
import hashlib
import os
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.errors import ConfigError

__all__ = ["ENV", "Route", "route", "matmul", "available", "extension_path", "amx_usable", "built_from",
           "source_sha256"]

ENV = "JAXCNN_BF16_MATMUL"
TARGET = "jaxcnn_bf16_matmul"
KERNELS = {"auto": 0, "portable": 1, "amx": 2}
_STEM = "_bf16_matmul"
_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Route:
    """Which path the bfloat16 products take: `name` is "ffi" or "xla"; `kernel` the FFI kernel ("amx",
    "portable") or ""; `reason` one clause saying why."""

    name: str
    kernel: str
    reason: str

    @property
    def ffi(self) -> bool:
        return self.name == "ffi"

    def describe(self) -> str:
        """One line for the run's log."""
        via = f"jaxcnn's FFI kernel ({self.kernel})" if self.ffi else "XLA"
        return f"bfloat16 products, float32 sums: {via}; {self.reason}"


def extension_path() -> Path | None:
    """The built extension beside this file, or None where setup.py did not build it."""
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (here / f"{_STEM}{suffix}").is_file():
            return here / f"{_STEM}{suffix}"
    return None


def source_sha256() -> str:
    """The SHA-256 of the shipped kernel source (`_bf16_matmul.cc`), which the built library also records."""
    return hashlib.sha256(Path(__file__).with_name(f"{_STEM}.cc").read_bytes()).hexdigest()


_loaded: list[ctypes.CDLL | str] = []


def _library() -> ctypes.CDLL | str:
    """The loaded extension with its XLA target registered, or why not (a string). Loaded once per process."""
    with _lock:
        if not _loaded:
            _loaded.append(_load())
        return _loaded[0]


def _load() -> ctypes.CDLL | str:
    path = extension_path()
    if path is None:
        return "the FFI extension is not built (setup.py needs a C++ compiler at install time)"
    try:
        lib = ctypes.CDLL(str(path))
        lib.jaxcnn_bf16_matmul_amx_status.restype = ctypes.c_int
        lib.jaxcnn_bf16_matmul_source_sha256.restype = ctypes.c_char_p
        jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(lib.jaxcnn_bf16_matmul), platform="cpu")
    except Exception as e:  # a broken build must leave the XLA path, not a failed trace
        return f"the FFI extension {path.name} does not load: {type(e).__name__}: {e}"
    return lib


def available() -> bool:
    """Whether the extension is built and loads here."""
    return not isinstance(_library(), str)


def built_from() -> str:
    """The SHA-256 of the source the loaded extension was built from ("" where not built or not recorded)."""
    lib = _library()
    return "" if isinstance(lib, str) else lib.jaxcnn_bf16_matmul_source_sha256().decode()


def _amx_status() -> int:
    lib = _library()
    return 0 if isinstance(lib, str) else int(lib.jaxcnn_bf16_matmul_amx_status())


def amx_usable() -> bool:
    """Whether the FFI's AMX kernel can run here (the extension is built, the CPU has amx_bf16, Linux granted the
    tile state)."""
    return _amx_status() == 1


def matmul(a: jax.Array, b: jax.Array, *, transpose_a: bool = False, transpose_b: bool = False,
           kernel: str = "auto") -> jax.Array:
    """<float32>[..., m, n] = op(a) @ op(b) for <bfloat16> a [..., m, k] (or [..., k, m] with transpose_a) and b
    [..., k, n] (or [..., n, k] with transpose_b), equal leading dimensions; every product exact in float32, the
    sums float32. Under `vmap` the batched operands gain a leading dimension (the kernel loops over it).

    Raises ConfigError where the extension is not built; `kernel="amx"` fails at run time where AMX is absent.
    """
    lib = _library()
    if isinstance(lib, str):
        raise ConfigError(f"{ENV}: {lib}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {kernel!r}")
    if a.dtype != jnp.bfloat16 or b.dtype != jnp.bfloat16:
        raise TypeError(f"bf16_ffi.matmul takes bfloat16 operands, got {a.dtype} and {b.dtype}")
    if a.ndim < 2 or a.ndim != b.ndim or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"bf16_ffi.matmul: operands of equal rank >= 2 and equal leading dimensions, got "
                         f"{a.shape} and {b.shape}")
    m, k = (a.shape[-1], a.shape[-2]) if transpose_a else a.shape[-2:]
    kb, n = (b.shape[-1], b.shape[-2]) if transpose_b else b.shape[-2:]
    if k != kb:
        raise ValueError(f"bf16_ffi.matmul: inner dimensions {k} and {kb} differ ({a.shape}, {b.shape})")
    out = jax.ShapeDtypeStruct(a.shape[:-2] + (m, n), jnp.float32)
    return jax.ffi.ffi_call(TARGET, out, vmap_method="broadcast_all")(
        a, b, transpose_a=bool(transpose_a), transpose_b=bool(transpose_b), kernel=np.int64(KERNELS[kernel]))


@functools.cache
def _amx_agrees() -> bool:
    """The AMX kernel against the portable one on this machine, on integer-valued operands whose float32 sums
    are exact (so any difference is a fault, not rounding), every transpose, sizes off the tile grid."""
    rng = np.random.default_rng(0)
    with jax.ensure_compile_time_eval():  # route() runs while a step is traced; this check runs now
        for ta in (False, True):
            for tb in (False, True):
                a = jnp.asarray(rng.integers(-8, 9, (45, 37) if ta else (37, 45)), jnp.bfloat16)
                b = jnp.asarray(rng.integers(-8, 9, (21, 45) if tb else (45, 21)), jnp.bfloat16)
                got = matmul(a, b, transpose_a=ta, transpose_b=tb, kernel="amx")
                want = matmul(a, b, transpose_a=ta, transpose_b=tb, kernel="portable")
                if not np.array_equal(np.asarray(got), np.asarray(want)):
                    return False
    return True


def route() -> Route:
    """The path bfloat16 products take now (see the module docstring); read when a step is traced."""
    asked = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if asked not in ("auto", "xla", "ffi"):
        raise ConfigError(f"{ENV}={os.environ[ENV]!r}: use auto, xla or ffi")
    if asked == "xla":
        return Route("xla", "", f"{ENV}=xla")
    backend = jax.default_backend()
    if asked == "ffi":
        if backend != "cpu":
            raise ConfigError(f"{ENV}=ffi: the FFI kernel runs on the CPU, and JAX's default backend is {backend}")
        lib = _library()
        if isinstance(lib, str):
            raise ConfigError(f"{ENV}=ffi: {lib}")
        kernel = "amx" if amx_usable() else "portable"
        return Route("ffi", kernel, f"{ENV}=ffi" + ("" if kernel == "amx" else " (no AMX here: portable kernel)"))
    if backend != "cpu":
        return Route("xla", "", f"bfloat16 is native on {backend}")
    lib = _library()
    if isinstance(lib, str):
        return Route("xla", "", lib)
    status = _amx_status()
    if status == 0:
        return Route("xla", "", "this CPU has no AMX, where XLA's own dot is as fast")
    if status < 0:
        return Route("xla", "", f"this CPU has AMX but Linux refused the tile state (arch_prctl: "
                                f"{os.strerror(-status)}; Linux >= 5.16 grants it)")
    if jax.device_count() > 1:
        return Route("xla", "", f"{jax.device_count()} CPU devices: under a mesh the custom call would be "
                                f"computed whole on each (it has no partitioning rule)")
    if not _amx_agrees():
        return Route("xla", "", "the AMX kernel disagreed with the portable one on this machine (a bug: report it)")
    return Route("ffi", "amx", "AMX found and checked on this machine")
