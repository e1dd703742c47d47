"""jaxcnn's XLA FFI kernel for bfloat16 products (jaxcnn/layers/_bf16_matmul.cc, jaxcnn/layers/bf16_ffi.py):
agreement with XLA's dot (float32-accumulated bfloat16) forward and backward, under jit, vmap and the engine's
scan; the route chosen and its fallbacks. Where AMX is absent the kernel under test is the portable one; where it
is present, AMX is also checked against it."""

from __future__ import annotations

import platform
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import configs
from jaxcnn.errors import ConfigError
from jaxcnn.layers import bf16_ffi, mixed_matmul
from tests.train.helpers import jaxpr_eqns, params_of, run_steps, single_program, small_text_cnn, write_splits

BUILT = bf16_ffi.extension_path() is not None
needs_ext = pytest.mark.skipif(not BUILT, reason="the FFI extension is not built here (no C++ compiler at install)")


def _einsum(a, b, ta, tb):
    a = jnp.swapaxes(a, -1, -2) if ta else a
    b = jnp.swapaxes(b, -1, -2) if tb else b
    return jnp.einsum("...mk,...kn->...mn", a, b, preferred_element_type=jnp.float32)


def _operands(rng, shape_a, shape_b, integers):
    draw = (lambda s: rng.integers(-8, 9, s)) if integers else (lambda s: rng.normal(size=s))
    return jnp.asarray(draw(shape_a), jnp.bfloat16), jnp.asarray(draw(shape_b), jnp.bfloat16)


def _count(fn, *args, name):
    return sum(e.primitive.name == name for e in jaxpr_eqns(fn, *args))


def test_the_extension_is_built_where_a_compiler_is():
    # pip install -e . builds it (setup.py); a silent build failure would leave only the XLA path tested.
    if platform.system() != "Linux" or shutil.which("c++") is None:
        # Nothing to build with: the XLA path, saying why.
        assert BUILT or "not built" in bf16_ffi.route().reason
        return
    assert BUILT, "setup.py did not build jaxcnn/layers/_bf16_matmul (see the pip install log)"
    assert bf16_ffi.available()
    # Built from the source shipped beside it (an edited .cc needs `pip install -e .` again).
    assert bf16_ffi.built_from() == bf16_ffi.source_sha256()
    # An (empty) Python module too, so that tools which import every module of the package find one.
    import importlib

    assert importlib.import_module("jaxcnn.layers._bf16_matmul").__doc__.startswith("jaxcnn's XLA FFI kernel")


@needs_ext
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (37, 45, 21), (16, 64, 32), (3, 300, 7)])
def test_products_equal_xlas_dot(ta, tb, m, k, n):
    rng = np.random.default_rng(m * k * n)
    shape_a, shape_b = (k, m) if ta else (m, k), (n, k) if tb else (k, n)
    # Integer values: every float32 sum is exact, so the kernels must agree bit for bit whatever their order.
    a, b = _operands(rng, shape_a, shape_b, integers=True)
    got = bf16_ffi.matmul(a, b, transpose_a=ta, transpose_b=tb)
    assert got.dtype == jnp.float32 and got.shape == (m, n)
    np.testing.assert_array_equal(got, _einsum(a, b, ta, tb))
    # Real values: float32 sums in another order, so equal to float32 rounding of the sum of magnitudes.
    a, b = _operands(rng, shape_a, shape_b, integers=False)
    got = jax.jit(lambda a, b: bf16_ffi.matmul(a, b, transpose_a=ta, transpose_b=tb))(a, b)
    bound = _einsum(jnp.abs(a), jnp.abs(b), ta, tb) * k * 2.0 ** -23
    assert np.all(np.abs(got - _einsum(a, b, ta, tb)) <= bound)


@needs_ext
def test_empty_sizes():
    z = bf16_ffi.matmul(jnp.zeros((4, 0), jnp.bfloat16), jnp.zeros((0, 3), jnp.bfloat16))
    np.testing.assert_array_equal(z, np.zeros((4, 3), np.float32))
    assert bf16_ffi.matmul(jnp.zeros((0, 5), jnp.bfloat16), jnp.ones((5, 3), jnp.bfloat16)).shape == (0, 3)


@needs_ext
def test_under_vmap_batched_and_broadcast_operands():
    rng = np.random.default_rng(1)
    a, b = _operands(rng, (5, 9, 13), (5, 13, 6), integers=True)
    both = jax.jit(jax.vmap(bf16_ffi.matmul))(a, b)
    np.testing.assert_array_equal(both, _einsum(a, b, False, False))
    c = b[:, 0, :]  # [5, 6], not mapped
    one = jax.vmap(lambda x: bf16_ffi.matmul(x, c, transpose_a=True), in_axes=1)(a)  # x: a[:, i] [5, 13]
    np.testing.assert_array_equal(one, jnp.stack([_einsum(a[:, i], c, True, False) for i in range(9)]))
    nested = jax.vmap(jax.vmap(bf16_ffi.matmul, (0, None)), (None, 0))(a, b)  # [b member][a member]
    np.testing.assert_array_equal(nested[2, 3], _einsum(a[3], b[2], False, False))


@needs_ext
def test_bad_operands_are_one_line_errors():
    x = jnp.ones((3, 4), jnp.bfloat16)
    with pytest.raises(TypeError, match="bfloat16 operands"):
        bf16_ffi.matmul(x.astype(jnp.float32), x.T)
    with pytest.raises(ValueError, match="inner dimensions 4 and 3"):
        bf16_ffi.matmul(x, x)
    with pytest.raises(ValueError, match="kernel must be"):
        bf16_ffi.matmul(x, x.T, kernel="fast")


@needs_ext
def test_the_amx_kernel_agrees_with_the_portable_one_or_refuses_where_absent():
    rng = np.random.default_rng(2)
    a, b = _operands(rng, (37, 70), (70, 45), integers=True)
    if not bf16_ffi.amx_usable():
        with pytest.raises(Exception, match="AMX is not usable"):
            jax.block_until_ready(bf16_ffi.matmul(a, b, kernel="amx"))
        return
    for ta, tb in [(False, False), (True, True)]:
        aa, bb = (a.T if ta else a), (b.T if tb else b)
        np.testing.assert_array_equal(bf16_ffi.matmul(aa, bb, transpose_a=ta, transpose_b=tb, kernel="amx"),
                                      bf16_ffi.matmul(aa, bb, transpose_a=ta, transpose_b=tb, kernel="portable"))
    if jax.device_count() == 1:
        assert bf16_ffi.route().describe().startswith("bfloat16 products, float32 sums: jaxcnn's FFI kernel (amx)")


@pytest.fixture(scope="module")
def emulated_amx(tmp_path_factory):
    """The FFI target built from the shipped source with the AMX instructions emulated in software as the Intel SDM
    defines them (-DJAXCNN_EMULATE_AMX): the AMX kernel's packing, strides, tiling and threading, run here."""
    import ctypes
    import pathlib
    import subprocess

    compiler = shutil.which("c++") or shutil.which("g++")
    if compiler is None or platform.system() != "Linux":
        pytest.skip("no Linux C++ compiler here")
    source = pathlib.Path(bf16_ffi.__file__).with_name("_bf16_matmul.cc")
    lib = tmp_path_factory.mktemp("amx") / "emulated.so"
    subprocess.run([compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-DJAXCNN_EMULATE_AMX",
                    f"-isystem{jax.ffi.include_dir()}", str(source), "-o", str(lib)], check=True)
    handle = ctypes.CDLL(str(lib))  # RTLD_LOCAL: its symbols do not meet the real extension's
    assert handle.jaxcnn_bf16_matmul_amx_status() == 1
    jax.ffi.register_ffi_target("jaxcnn_bf16_matmul_emulated_amx", jax.ffi.pycapsule(handle.jaxcnn_bf16_matmul),
                                platform="cpu")

    def call(a, b, ta=False, tb=False, kernel="amx"):
        m, n = (a.shape[-1] if ta else a.shape[-2]), (b.shape[-2] if tb else b.shape[-1])
        out = jax.ShapeDtypeStruct(a.shape[:-2] + (m, n), jnp.float32)
        return jax.ffi.ffi_call("jaxcnn_bf16_matmul_emulated_amx", out, vmap_method="broadcast_all")(
            a, b, transpose_a=ta, transpose_b=tb, kernel=np.int64(bf16_ffi.KERNELS[kernel]))

    call.faults = lambda: handle.jaxcnn_bf16_matmul_emulated_faults()  # what real AMX would have faulted on
    yield call
    assert call.faults() == 0


@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (37, 45, 21), (16, 32, 32), (50, 300, 70), (130, 33, 100)])
def test_the_amx_kernel_in_emulation_equals_xlas_dot(emulated_amx, ta, tb, m, k, n):
    rng = np.random.default_rng(m + k + n)
    a, b = _operands(rng, (k, m) if ta else (m, k), (n, k) if tb else (k, n), integers=True)
    got = jax.jit(lambda a, b: emulated_amx(a, b, ta, tb))(a, b)
    np.testing.assert_array_equal(got, _einsum(a, b, ta, tb))  # exact sums: bit for bit
    a, b = _operands(rng, a.shape, b.shape, integers=False)
    bound = _einsum(jnp.abs(a), jnp.abs(b), ta, tb) * k * 2.0 ** -23
    assert np.all(np.abs(emulated_amx(a, b, ta, tb) - _einsum(a, b, ta, tb)) <= bound)
    assert emulated_amx.faults() == 0  # tile shapes and configuration as the hardware requires


def test_the_amx_kernel_in_emulation_under_vmap_and_the_thread_pool(emulated_amx):
    rng = np.random.default_rng(5)
    a, b = _operands(rng, (3, 200, 45), (3, 45, 40), integers=True)  # 13 row blocks: split over the pool
    np.testing.assert_array_equal(jax.jit(jax.vmap(emulated_amx))(a, b), _einsum(a, b, False, False))
    np.testing.assert_array_equal(emulated_amx(a[0], b[0], kernel="auto"),
                                  emulated_amx(a[0], b[0], kernel="portable"))


@needs_ext
def test_mixed_matmul_through_the_ffi_forward_and_gradients_equal_the_xla_path(monkeypatch):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 6, 11, 24)), jnp.float32)  # [member, batch, length, k]
    w = jnp.asarray(rng.normal(size=(2, 24, 10)), jnp.float32)

    def loss(x, w):
        return jnp.sum(jnp.tanh(mixed_matmul(x, w)))

    def grad():  # a new function per route: JAX caches a trace per function, and the route is read when tracing
        return jax.vmap(jax.value_and_grad(lambda x, w: loss(x, w), (0, 1)))

    monkeypatch.setenv(bf16_ffi.ENV, "ffi")
    assert _count(grad(), x, w, name="ffi_call") == 3 and _count(grad(), x, w, name="dot_general") == 0
    got = jax.jit(grad())(x, w)
    monkeypatch.setenv(bf16_ffi.ENV, "xla")
    assert _count(grad(), x, w, name="ffi_call") == 0
    want = jax.jit(grad())(x, w)
    # The same bfloat16 operands and float32 sums, in another order.
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.dtype == e.dtype == jnp.float32
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * float(jnp.abs(e).max()))


@needs_ext
@pytest.mark.multidevice
def test_a_bfloat16_run_through_the_ffi_takes_the_xla_paths_steps(tmp_path, monkeypatch):
    # The engine's program: members vmapped, a scan of steps, jit over an 8-device mesh.
    files = write_splits(tmp_path / "data")
    cfg = configs.tiny().replace(dataset=None, **files, devices=8, precision="bfloat16", windows=(2,))
    traced, matmul = [], bf16_ffi.matmul
    monkeypatch.setattr(bf16_ffi, "matmul", lambda *a, **k: traced.append(k) or matmul(*a, **k))
    runs = {}
    for route in ("ffi", "xla"):
        monkeypatch.setenv(bf16_ffi.ENV, route)
        traced.clear()
        program = single_program(cfg)
        sums = run_steps(program, 3)
        runs[route] = (sums, params_of(program))
        assert (len(traced) >= 6) == (route == "ffi"), (route, len(traced))  # bank + head, forward + backward
    (s_ffi, p_ffi), (s_xla, p_xla) = runs["ffi"], runs["xla"]
    np.testing.assert_allclose(s_ffi["loss_sum"], s_xla["loss_sum"], rtol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4), p_ffi, p_xla)


def test_route_auto_xla_and_the_bad_values(monkeypatch):
    monkeypatch.setenv(bf16_ffi.ENV, "xla")
    assert bf16_ffi.route() == bf16_ffi.Route("xla", "", "JAXCNN_BF16_MATMUL=xla")
    monkeypatch.setenv(bf16_ffi.ENV, "fastest")
    with pytest.raises(ConfigError, match="JAXCNN_BF16_MATMUL='fastest': use auto, xla or ffi"):
        bf16_ffi.route()
    monkeypatch.delenv(bf16_ffi.ENV)
    auto = bf16_ffi.route()
    # auto takes the FFI only where its AMX kernel runs (elsewhere XLA's dot is as fast), on one CPU device.
    assert auto.ffi == (BUILT and bf16_ffi.amx_usable() and jax.default_backend() == "cpu"
                        and jax.device_count() == 1)
    assert auto.describe().startswith("bfloat16 products, float32 sums: ")


@needs_ext
def test_auto_on_a_cpu_with_amx_keeps_xla_for_several_devices_or_a_refused_tile_state(monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")  # the CPU's choices, on any machine
    monkeypatch.delenv(bf16_ffi.ENV, raising=False)
    monkeypatch.setattr(bf16_ffi, "_amx_status", lambda: -1)  # EPERM
    assert "this CPU has AMX but Linux refused the tile state (arch_prctl: " in bf16_ffi.route().reason
    monkeypatch.setattr(bf16_ffi, "_amx_status", lambda: 1)
    monkeypatch.setattr(bf16_ffi, "_amx_agrees", lambda: True)
    monkeypatch.setattr(jax, "device_count", lambda: 8)
    assert bf16_ffi.route() == bf16_ffi.Route(
        "xla", "", "8 CPU devices: under a mesh the custom call would be computed whole on each (it has no "
                   "partitioning rule)")
    monkeypatch.setattr(jax, "device_count", lambda: 1)
    assert bf16_ffi.route() == bf16_ffi.Route("ffi", "amx", "AMX found and checked on this machine")
    monkeypatch.setattr(bf16_ffi, "_amx_agrees", lambda: False)
    assert bf16_ffi.route().name == "xla" and "disagreed" in bf16_ffi.route().reason


def test_without_the_extension_auto_falls_back_to_xla_and_ffi_is_refused(monkeypatch):
    monkeypatch.setattr(bf16_ffi, "_library", lambda: "the FFI extension is not built (test)")
    monkeypatch.delenv(bf16_ffi.ENV, raising=False)
    if jax.default_backend() == "cpu":
        assert bf16_ffi.route() == bf16_ffi.Route("xla", "", "the FFI extension is not built (test)")
    assert not bf16_ffi.amx_usable()
    x, w = jnp.ones((4, 8)), jnp.ones((8, 3))
    assert _count(lambda x, w: mixed_matmul(x, w), x, w, name="ffi_call") == 0
    np.testing.assert_array_equal(mixed_matmul(x, w), np.full((4, 3), 8.0, np.float32))
    monkeypatch.setenv(bf16_ffi.ENV, "ffi")
    with pytest.raises(ConfigError, match="JAXCNN_BF16_MATMUL=ffi: the FFI extension is not built"):
        bf16_ffi.route()
    with pytest.raises(ConfigError, match="not built"):
        bf16_ffi.matmul(jnp.ones((2, 2), jnp.bfloat16), jnp.ones((2, 2), jnp.bfloat16))


@needs_ext
def test_kims_model_through_the_ffi_equals_the_xla_path(monkeypatch):
    model, params, ids = small_text_cnn(dtype=jnp.bfloat16)

    def loss(p):
        return jnp.sum(model.apply({"params": p}, ids) ** 2)

    out = {}
    for route in ("ffi", "xla"):
        monkeypatch.setenv(bf16_ffi.ENV, route)
        step = jax.value_and_grad(lambda p: loss(p))  # a new function: traced again, under this route
        assert _count(step, params, name="ffi_call") == (6 if route == "ffi" else 0)  # bank + head, fwd + 2 bwd
        out[route] = jax.jit(step)(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), out["ffi"], out["xla"])


@needs_ext
@pytest.mark.parametrize("route", ["ffi", "xla"])
def test_a_run_says_in_one_line_which_path_its_products_take(tmp_path, monkeypatch, caplog, route):
    import logging

    from jaxcnn import cli
    from tests.train.test_cli import TINY

    files = write_splits(tmp_path / "data")
    monkeypatch.setenv(bf16_ffi.ENV, route)
    with caplog.at_level(logging.INFO):
        assert cli.main(["train", "--workdir", str(tmp_path / "w"), *TINY, "--epochs", "1", "--precision",
                         "bfloat16", *(f"--{k.replace('_', '-')}={v}" for k, v in files.items())]) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision: ")]
    via = "jaxcnn's FFI kernel (" if route == "ffi" else "XLA; JAXCNN_BF16_MATMUL=xla"
    assert len(lines) == 1 and f"bfloat16 products, float32 sums: {via}" in lines[0], lines


@needs_ext
@pytest.mark.multidevice
def test_eight_devices_call_the_kernel_at_once_without_deadlock():
    # Each device's call splits its rows over XLA's intra-op thread pool, which the eight devices share: the
    # caller must never wait on a task queued behind another caller's.
    from jax.sharding import Mesh, PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    rng = np.random.default_rng(4)
    a, b = _operands(rng, (8 * 96, 70), (70, 50), integers=True)
    f = jax.jit(jax.shard_map(lambda a, b: bf16_ffi.matmul(a, b), mesh=mesh, in_specs=(P("data"), P()),
                              out_specs=P("data")))
    want = _einsum(a, b, False, False)
    for _ in range(20):
        np.testing.assert_array_equal(f(a, b), want)
