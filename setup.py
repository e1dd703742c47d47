"""Builds the optional XLA FFI kernel jaxcnn/layers/_bf16_matmul.cc (bfloat16 products on AMX; see
jaxcnn/layers/bf16_ffi.py). Everything else is in pyproject.toml. Without a C++ compiler, or without jaxlib's
FFI headers at build time, the install goes on and the XLA path runs: the extension is optional."""

import hashlib
import importlib.util
from pathlib import Path

from setuptools import Extension, setup


def _ffi_include() -> list[str]:
    # jaxlib's FFI headers without importing jax (the build environment needs only jaxlib).
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    include = Path(next(iter(spec.submodule_search_locations))) / "include"
    return [str(include)] if (include / "xla" / "ffi" / "api" / "ffi.h").is_file() else []


include = _ffi_include()
source = Path(__file__).resolve().parent / "jaxcnn" / "layers" / "_bf16_matmul.cc"
setup(ext_modules=[Extension(
    "jaxcnn.layers._bf16_matmul", ["jaxcnn/layers/_bf16_matmul.cc"],
    # A Python module (an empty one: tools that import every module find it); the source's hash, so that a
    # stale build is detectable (bf16_ffi.built_from).
    define_macros=[("JAXCNN_PYTHON_MODULE", "1"),
                   ("JAXCNN_SOURCE_SHA256", f'"{hashlib.sha256(source.read_bytes()).hexdigest()}"')],
    # -isystem: the headers' own warnings are not ours.
    extra_compile_args=["-O3", "-std=c++17"] + [f"-isystem{d}" for d in include],
    language="c++", optional=True)] if include else [])
