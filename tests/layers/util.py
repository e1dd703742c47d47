"""Helpers shared by the layer tests.

Random initializers compile once per parameter shape (about a second each on a slow CPU), so tests whose subject
is not the initializer build their variables from `jax.eval_shape` and NumPy instead of calling `init`.
"""

import functools

import jax
import numpy as np

KEY = jax.random.key(0)


def rand(shape, seed=0):
    """Standard-normal float32 NumPy array."""
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def abstract(module, *args, **kwargs):
    """(output, variables) of `module.init_with_output` as shape/dtype structs, compiling nothing; raises what
    tracing the layer raises."""
    return jax.eval_shape(lambda: module.init_with_output(KEY, *args, **kwargs))


def random_variables(module, *args, seed=0, **kwargs):
    """Variables of the shapes and dtypes `module.init` would create, filled with NumPy normals."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), abstract(module, *args, **kwargs)[1])


def jitted(fn, *args, **static):
    """`fn(*args, **static)` compiled as one program: cheaper than compiling each primitive of an eager call, and
    a check that `fn` traces with its keyword arguments static."""
    return jax.jit(functools.partial(fn, **static))(*args)
