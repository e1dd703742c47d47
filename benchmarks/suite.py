"""Benchmarks: `python scripts/benchmark.py` (or `jaxcnn bench`) prints a markdown table and writes JSON.

They live beside the package, not in it (the package is the library only), and time jaxcnn's own code paths:
the training block of a one-member program (`jaxcnn train`) and the predictor's inference step.

Kim's configuration on MR (300-d random embeddings, windows 3/4/5 x 100, batch 50, Adadelta, dropout, max-norm),
timed after compilation with the device synchronised; every figure is the median of several repeats. Where two
implementations are compared (jaxcnn vs eager PyTorch, conv-bank forms, lazy vs dense embedding updates) they run
interleaved in the same process or pass, and the ratio is the median of the paired ratios: the machine is shared
and noisy, so absolute numbers drift while ratios hold.

FLOPs are counted by hand (`kim_flops_per_example`: the matrix multiplies, which are all but a few percent of the
work) and compared with the machine's float32 matmul rate measured in the same run: the roofline fraction.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
TORCH_SCRIPT = REPO.parent / "shared" / "bench" / "torch_kim.py"


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The machine's float32 matrix-multiply rate (n x n x n), GFLOP/s."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    return 2 * n ** 3 / _median_time(lambda: f(a), repeats) / 1e9


def kim_flops_per_example(length: int, dim: int = 300, windows=(3, 4, 5), maps: int = 100, classes: int = 2,
                          train: bool = True) -> float:
    """Multiply-adds x 2 of the conv bank and the head for one example; training is forward + two backward
    matmuls (input and weight gradients) per layer."""
    conv = sum(2 * (length - k + 1) * k * dim * maps for k in windows)
    head = 2 * maps * len(windows) * classes
    return (3 if train else 1) * (conv + head)


def _kim_program(data_dir: str | None, **overrides):
    """(cfg, task, data, program) of Kim's CNN-rand on MR fold 0: what `jaxcnn train --dataset mr` trains."""
    from jaxcnn import configs, tasks
    from jaxcnn.train.program import Program
    from jaxcnn.train.trainer import member_for

    cfg = configs.kim2014("mr", "rand").replace(data_dir=data_dir, devices=1, progress=False, tensorboard=False,
                                                plots=False, **overrides)
    task = tasks.get("text")
    examples = task.load(cfg)
    member = member_for(cfg, examples)
    data = task.prepare(cfg, examples, [member.rows()], [member.seed])
    return cfg, task, data, Program(cfg, task, data, [member])


class KimBench:
    """Kim's CNN-rand on MR, ready to time: a one-member program's block of training steps, and the predictor's
    inference step on a batch of training sentences."""

    def __init__(self, data_dir: str | None, steps: int = 50, infer_batch: int = 1000, fold: bool = True,
                 **overrides):
        from jaxcnn.predict import SavedProgram
        from jaxcnn.train.parallel import put

        self.cfg, task, self.data, self.program = _kim_program(data_dir, steps_per_dispatch=steps, **overrides)
        self.steps = steps
        p = self.program
        self.block = put(p.epoch_blocks(1, [True])[0], p.index_sharding)
        self.length = self.data.encoder.length
        ids = self.data.arrays["ids"][p.members[0].train[:infer_batch]]
        self.infer_batch = {"ids": jnp.asarray(ids)}
        self.infer_n = len(ids)
        start = time.perf_counter()
        # As `jaxcnn predict` and `evaluate` run: the embedding folded into the conv taps once per model.
        self.saved = SavedProgram(task, self.cfg, self.data, p.state, [m.describe() for m in p.members], 0,
                                  use_aux=fold)
        jax.block_until_ready(self.saved.aux)
        self.fold_seconds = time.perf_counter() - start if fold else None
        start = time.perf_counter()
        self.train_block()
        self.compile_seconds = time.perf_counter() - start
        self.infer()

    def train_block(self):
        sums, _ = self.program.train_block(self.block)
        return sums

    def infer(self):
        return self.saved.infer(self.infer_batch)

    def train_rate(self, repeats: int) -> float:
        return self.steps * 50 / _median_time(self.train_block, repeats)

    def infer_rate(self, repeats: int) -> float:
        return self.infer_n / _median_time(self.infer, repeats)


TORCH_CONFIGS = {"eager_f32": [], "eager_bf16": ["--bf16"], "compile_f32": ["--compile"],
                 "compile_bf16": ["--compile", "--bf16"]}


def torch_reference(data_dir: str, steps: int = 60, flags: Sequence[str] = ()) -> dict[str, Any] | None:
    """One run of ../shared/bench/torch_kim.py (same model and data) with `flags` (`--compile`, `--bf16`), or None
    without torch."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    if not TORCH_SCRIPT.exists():
        return None
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(TORCH_SCRIPT), "--mode", "throughput", "--data",
                          str(pathlib.Path(data_dir) / "kim"), "--steps", str(steps), *flags],
                         capture_output=True, text=True, check=True, timeout=1800)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "seconds": time.perf_counter() - start}


def _bf16_route() -> str:
    from jaxcnn.layers import bf16_ffi

    return bf16_ffi.route().describe()


def bench_vs_torch(data_dir: str, pairs: int = 3, repeats: int = 5, precision: str = "float32",
                   slow_seconds: float = 90.0) -> dict[str, Any]:
    """jaxcnn (at `precision`) against the four PyTorch configurations a user would pick (eager or torch.compile,
    float32 or bfloat16 autocast), interleaved `pairs` times; each ratio is the median of the ratios paired with
    the jaxcnn measurement of the same round. A configuration whose run takes over `slow_seconds` (bfloat16
    autocast on a CPU without bfloat16 units: oneDNN's reference kernels) runs in the first round only."""
    bench = KimBench(data_dir, precision=precision)
    # At another precision, float32 too, in the same rounds: the ratio between the two is paired as well.
    base = KimBench(data_dir) if precision != "float32" else None
    rows: list[tuple[dict[str, float], dict[str, dict[str, Any]]]] = []
    slow: set[str] = set()
    for round_ in range(pairs):
        ours = {"train": bench.train_rate(repeats), "infer": bench.infer_rate(repeats)}
        if base is not None:
            ours |= {"train_f32": base.train_rate(repeats), "infer_f32": base.infer_rate(repeats)}
        theirs = {}
        for name, flags in TORCH_CONFIGS.items():
            if name in slow:
                continue
            run = torch_reference(data_dir, flags=flags)
            if run is None:
                break
            theirs[name] = run
            if run["seconds"] > slow_seconds:
                slow.add(name)
        rows.append((ours, theirs))
    out: dict[str, Any] = {
        "precision": precision,
        **({"bf16_route": _bf16_route()} if precision == "bfloat16" else {}),
        "jax_train_examples_per_s": statistics.median(o["train"] for o, _ in rows),
        "jax_infer_examples_per_s": statistics.median(o["infer"] for o, _ in rows),
        "compile_seconds": bench.compile_seconds,
        "infer_path": "folded embedding x taps table (fold_embeddings), as jaxcnn predict/evaluate",
        "fold_seconds": bench.fold_seconds,
        "length": bench.length,
    }
    if base is not None:
        out |= {"jax_float32_train_examples_per_s": statistics.median(o["train_f32"] for o, _ in rows),
                "jax_float32_infer_examples_per_s": statistics.median(o["infer_f32"] for o, _ in rows),
                "train_over_float32": statistics.median(o["train"] / o["train_f32"] for o, _ in rows),
                "infer_over_float32": statistics.median(o["infer"] / o["infer_f32"] for o, _ in rows)}
    for name in TORCH_CONFIGS:
        paired = [(o, t[name]) for o, t in rows if name in t]
        if not paired:
            continue
        out[f"torch_{name}"] = {
            "train_examples_per_s": statistics.median(t["train_sent_per_s"] for _, t in paired),
            "infer_examples_per_s": statistics.median(t["infer_sent_per_s"] for _, t in paired),
            "train_ratio": statistics.median(o["train"] / t["train_sent_per_s"] for o, t in paired),
            "infer_ratio": statistics.median(o["infer"] / t["infer_sent_per_s"] for o, t in paired),
            "runs": len(paired), "threads": paired[0][1]["threads"]}
    if "torch_eager_f32" in out:  # the keys of the float32-only benchmark this one grew from
        eager = out["torch_eager_f32"]
        out |= {"torch_train_examples_per_s": eager["train_examples_per_s"],
                "torch_infer_examples_per_s": eager["infer_examples_per_s"],
                "train_ratio": eager["train_ratio"], "infer_ratio": eager["infer_ratio"],
                "torch_threads": eager["threads"]}
    return out


def bench_roofline(data_dir: str, repeats: int = 5) -> dict[str, Any]:
    """Achieved GFLOP/s in training and inference beside the measured matmul rate, interleaved. Inference here is
    the plain (unfolded) forward, whose FLOPs the count describes."""
    bench = KimBench(data_dir, fold=False)
    train_flops = kim_flops_per_example(bench.length)
    infer_flops = kim_flops_per_example(bench.length, train=False)
    samples = []
    for _ in range(3):
        peak = matmul_gflops()
        samples.append((peak, bench.train_rate(repeats) * train_flops / 1e9, bench.infer_rate(repeats) * infer_flops / 1e9))
    return {
        "flops_counted": "by hand: conv-bank and head matrix multiplies (kim_flops_per_example)",
        "train_mflop_per_example": train_flops / 1e6,
        "infer_mflop_per_example": infer_flops / 1e6,
        "matmul_gflops": statistics.median(s[0] for s in samples),
        "train_gflops": statistics.median(s[1] for s in samples),
        "infer_gflops": statistics.median(s[2] for s in samples),
        "train_roofline_fraction": statistics.median(s[1] / s[0] for s in samples),
        "infer_roofline_fraction": statistics.median(s[2] / s[0] for s in samples),
    }


def bench_host(data_dir: str, epochs: int = 3) -> dict[str, Any]:
    """Host work per training step (building an epoch's index blocks and sending them) beside the step time, and
    the number of compilations of the train and eval functions after `epochs` epochs of the real loop."""
    from jaxcnn.train.parallel import put

    cfg, _, _, program = _kim_program(data_dir)
    for epoch in range(1, epochs + 1):
        program.train_epoch(epoch, [True])
        program.evaluate("dev")
        program.evaluate("test")

    def host_epoch():
        for block in program.epoch_blocks(epochs + 1, [True]):
            put(block, program.index_sharding).block_until_ready()

    host_seconds = _median_time(lambda: host_epoch() or 0, 5) / program.steps_per_epoch
    step_seconds = _median_time(lambda: program.train_epoch(epochs + 1, [True])[0]["loss_sum"],
                                3) / program.steps_per_epoch
    return {"host_ms_per_step": 1000 * host_seconds, "step_ms": 1000 * step_seconds,
            "host_fraction": host_seconds / step_seconds, "epochs": epochs,
            "train_compilations": program.train_fn._cache_size(), "eval_compilations": program.eval_fn._cache_size()}


def bench_conv_bank(length: int = 64, batch: int = 50, dim: int = 300, steps: int = 10, repeats: int = 5,
                    ) -> dict[str, Any]:
    """Forward + backward of Kim's bank in a `lax.scan` of `steps`, per implementation, on this backend:
    XLA's convolution, one matmul + shifted sums, and im2col (one matmul per width)."""
    from jaxcnn.layers import MultiScaleConv, masked_max_over_time

    x = jax.random.normal(jax.random.key(0), (batch, length, dim))
    mask = jnp.ones((batch, length), bool)

    def im2col_bank(params, x):
        outs = []
        for k in (3, 4, 5):
            lo = length - k + 1
            cols = jnp.concatenate([x[:, j:j + lo] for j in range(k)], axis=-1)
            w = params[f"conv_w{k}"]["kernel"].reshape(k * dim, -1)
            outs.append(jnp.max(jax.nn.relu(cols @ w + params[f"conv_w{k}"]["bias"]), axis=1))
        return jnp.concatenate(outs, -1)

    results = {}
    for impl in ("xla", "matmul", "im2col"):
        bank = MultiScaleConv(features=100, activation="relu", pool=masked_max_over_time,
                              impl="matmul" if impl == "im2col" else impl)
        params = bank.init(jax.random.key(1), x, mask)["params"]
        apply = (lambda p, x: im2col_bank(p, x)) if impl == "im2col" else (
            lambda p, x, bank=bank: bank.apply({"params": p}, x, mask))
        grad = jax.grad(lambda p, x: jnp.sum(apply(p, x) ** 2))

        def scanned(p, x, grad=grad):
            return jax.lax.scan(lambda p, i: (jax.tree.map(lambda a, g: a - 1e-4 * g, p, grad(p, x + i)), None),
                                p, jnp.arange(steps, dtype=jnp.float32))[0]

        f = jax.jit(scanned)
        jax.block_until_ready(f(params, x))
        results[impl] = 1000 * _median_time(lambda f=f: f(params, x), repeats) / steps
    return {"backend": jax.default_backend(), "ms_per_step": results,
            "fastest": min(results, key=results.get)}


def bench_bf16_matmul(m: int = 3200, k: int = 300, n: int = 1200, repeats: int = 7) -> dict[str, Any]:
    """Kim's bank product on MR ([batch 50 x length 64, 300] x [300, 3 x 4 x 5 taps x 100]) in bfloat16 with float32
    sums: jaxcnn's FFI kernels (portable; AMX where usable) against XLA's bfloat16 and float32 dots. Timed
    round-robin, medians; the route `--precision bfloat16` takes here is reported with them."""
    from jaxcnn.layers import bf16_ffi

    a = jax.random.normal(jax.random.key(0), (m, k)).astype(jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (k, n)).astype(jnp.bfloat16)
    fns = {"xla_bf16": jax.jit(lambda a, b: jnp.einsum("mk,kn->mn", a, b, preferred_element_type=jnp.float32)),
           "xla_f32": jax.jit(lambda a, b: a.astype(jnp.float32) @ b.astype(jnp.float32))}
    if bf16_ffi.available():
        fns["ffi_portable"] = jax.jit(lambda a, b: bf16_ffi.matmul(a, b, kernel="portable"))
        if bf16_ffi.amx_usable():
            fns["ffi_amx"] = jax.jit(lambda a, b: bf16_ffi.matmul(a, b, kernel="amx"))
    want = jax.block_until_ready(fns["xla_bf16"](a, b))
    for name, f in fns.items():
        err = float(jnp.abs(f(a, b) - want).max())
        if err > 1e-3 * float(jnp.abs(want).max()):
            raise AssertionError(f"bf16_matmul: {name} disagrees with XLA's dot by {err}")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, f in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(f(a, b))
            times[name].append(time.perf_counter() - start)
    flops = 2.0 * m * k * n
    return {"shape": f"[{m} x {k}] x [{k} x {n}]", "route": bf16_ffi.route().describe(),
            "gflop_per_s": {name: flops / statistics.median(t) / 1e9 for name, t in times.items()}}


def bench_embedding_grad(vocab: int = 18765, length: int = 64, batch: int = 50, dim: int = 300,
                         repeats: int = 10) -> dict[str, Any]:
    """The embedding gradient (a scatter-add) with Kim's padding (many ids 0: index contention,
    openxla/xla#46225) and with distinct ids, and the lazy row update's gradient of the batch's rows only."""
    table = jax.random.normal(jax.random.key(0), (vocab, dim))
    rng = np.random.default_rng(0)
    padded = rng.integers(1, vocab, (batch, length)).astype(np.int32)
    padded[:, :4] = 0
    padded[:, 24:] = 0
    distinct = (np.arange(batch * length) % (vocab - 1) + 1).reshape(batch, length).astype(np.int32)
    dense = jax.jit(jax.grad(lambda t, ids: jnp.sum(jnp.take(t, ids, axis=0) ** 2)))

    def rows_only(t, ids):
        flat = jnp.concatenate([jnp.zeros((1,), ids.dtype), ids.reshape(-1)])
        rows, inv = jnp.unique(flat, size=flat.size, fill_value=0, return_inverse=True)
        sub = jnp.take(t, rows, axis=0)
        return jax.grad(lambda s: jnp.sum(jnp.take(s, inv[1:].reshape(ids.shape), axis=0) ** 2))(sub)

    rows = jax.jit(rows_only)
    out = {}
    for name, f, ids in (("dense_padded", dense, padded), ("dense_distinct", dense, distinct),
                         ("rows_padded", rows, padded)):
        jax.block_until_ready(f(table, ids))
        out[name] = 1000 * _median_time(lambda f=f, ids=ids: f(table, ids), repeats)
    return {"ms": out, "contention_slowdown": out["dense_padded"] / out["dense_distinct"]}


def bench_lazy_update(data_dir: str, repeats: int = 5) -> dict[str, Any]:
    """Training steps with the lazy (row) embedding update against the dense one, interleaved."""
    benches = {lazy: KimBench(data_dir, steps=20, lazy_embeddings=lazy) for lazy in (True, False)}
    ratios, rates = [], {True: [], False: []}
    for _ in range(repeats):
        r = {lazy: b.train_rate(1) for lazy, b in benches.items()}
        for k in r:
            rates[k].append(r[k])
        ratios.append(r[True] / r[False])
    return {"lazy_examples_per_s": statistics.median(rates[True]),
            "dense_examples_per_s": statistics.median(rates[False]), "speedup": statistics.median(ratios)}


def peak_rss_kb() -> int:
    """This process's peak resident set size in KiB (VmHWM where /proc exists, else ru_maxrss)."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    scale = 1024 if sys.platform == "darwin" else 1  # macOS reports bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale


def bench_peak_memory(data_dir: str) -> dict[str, Any]:
    """Peak resident memory of a process that trains MR (one epoch, Kim's config, one device).

    Read as the process's own high-water mark (Linux: VmHWM), not `ru_maxrss`: Linux carries `ru_maxrss` across
    exec, so a child forked from this (by then large) benchmark process would report the parent's size."""
    code = ("import sys, tempfile; from jaxcnn.cli import main; "
            "d = tempfile.mkdtemp(); main(['-q', 'train', '--dataset', 'mr', '--data-dir', sys.argv[1], "
            "'--workdir', d, '--epochs', '1', '--devices', '1', '--no-progress', '--no-plots']); "
            "from benchmarks.suite import peak_rss_kb; print(peak_rss_kb())")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    out = subprocess.run([sys.executable, "-c", code, data_dir], capture_output=True, text=True, check=True,
                         env=env, timeout=1800)
    kb = int(out.stdout.strip().splitlines()[-1])
    return {"peak_rss_mb": kb / 1024}


def bench_multi(data_dir: str) -> dict[str, Any]:
    """MR's 10 CV folds as one program against ten sequential runs (`benchmarks.multi`), paired blocks."""
    from benchmarks.multi import benchmark_cv_vmapped

    r = benchmark_cv_vmapped(data_dir, repeats=5)
    mb = {k: round(sum(v.get(f, 0) for f in ("argument_size_in_bytes", "temp_size_in_bytes")) / 2 ** 20)
          for k, v in r["memory"].items()}
    return {"members": r["folds"], "chunk": r["chunk"], "ratio": r["ratio"],
            "ratios": " ".join(f"{x:.3f}" for x in r["ratios"]),
            "program_examples_per_s": r["vmapped_examples_per_second"],
            "sequential_examples_per_s": r["sequential_examples_per_second"],
            "compile_seconds": r["compile_seconds"], "compiled_block_mb": mb}


def bench_multi_processes(data_dir: str) -> dict[str, Any]:
    """`jaxcnn cv` on MR's 10 folds against ten `jaxcnn train --fold k` processes, end to end, 2 epochs."""
    from benchmarks.multi import benchmark_cv_processes

    r = benchmark_cv_processes(data_dir, epochs=2)
    return {"members": r["folds"], "epochs": r["epochs"], "ratio": r["ratio"], "train_ratio": r["train_ratio"],
            "program_wall_s": r["wall_seconds"]["program"], "sequential_wall_s": r["wall_seconds"]["sequential"],
            "program_train_s": r["train_seconds"]["program"], "sequential_train_s": r["train_seconds"]["sequential"],
            "program_test_accuracy_mean": sum(r["test_accuracy"]["program"]) / r["folds"],
            "sequential_test_accuracy_mean": sum(r["test_accuracy"]["sequential"]) / r["folds"]}


def bench_explain(data_dir: str, n: int = 1000, repeats: int = 3) -> dict[str, Any]:
    """`Predictor.explain` against `Predictor.predict` on the same 1,000 MR sentences, interleaved, medians
    (issue 18's goal: at most ~3x). The head is drawn at random (Kim's starts at zero, which would leave no
    n-gram to report and flatter the explanation)."""
    from jaxcnn.predict import Predictor, SavedProgram

    cfg, task, data, program = _kim_program(data_dir)
    texts = list(task.load(cfg).inputs[:n])
    head = program.state.params["head"]
    key = jax.random.PRNGKey(0)
    params = {**program.state.params, "head": {"kernel": 0.1 * jax.random.normal(key, head["kernel"].shape),
                                               "bias": head["bias"]}}
    state = program.state.replace(params=params)
    predictor = Predictor([SavedProgram(task, cfg, data, state, [m.describe() for m in program.members], 0)])
    predictor.predict(texts[:50]), predictor.explain(texts[:50])  # compile both
    times = {"predict": [], "explain": []}
    for _ in range(repeats):
        for name, fn in (("predict", predictor.predict), ("explain", predictor.explain)):
            gc.collect()  # each call starts from the same collector state (what the last one left is not its cost)
            start = time.perf_counter()
            fn(texts)
            times[name].append(time.perf_counter() - start)
    # The computation alone, on the same batches (sorted by length and cut, as both run): the decomposition
    # against the prediction step; the rest of `explain` is building its records in Python.
    from jaxcnn import explain

    saved = predictor.program
    model, variables = predictor._kim_model()
    batches = [jnp.asarray(ids) for _, ids, _ in predictor._encoded(texts, 256)]
    steps = {"predict": lambda: [saved.infer({"ids": ids}) for ids in batches],
             "explain": lambda: [explain.exact_jit(model, variables["params"], ids, saved.aux) for ids in batches]}
    for fn in steps.values():
        jax.block_until_ready(fn())  # compiled for every batch's length
    compute = {name: _median_time(fn, repeats + 2) for name, fn in steps.items()}
    predict_s, explain_s = statistics.median(times["predict"]), statistics.median(times["explain"])
    return {"sentences": len(texts), "predict_seconds": predict_s, "explain_seconds": explain_s,
            "explain_over_predict": explain_s / predict_s,
            "compute_predict_seconds": compute["predict"], "compute_explain_seconds": compute["explain"],
            "compute_explain_over_predict": compute["explain"] / compute["predict"]}


def bench_encode(data_dir: str) -> dict[str, Any]:
    from benchmarks.encode import benchmark_encode

    return benchmark_encode(data_dir)


BENCHMARKS: dict[str, Callable[[str], dict[str, Any]]] = {
    "vs_torch": bench_vs_torch,
    "roofline": bench_roofline,
    "host": bench_host,
    "conv_bank": lambda d: bench_conv_bank(),
    "bf16_matmul": lambda d: bench_bf16_matmul(),
    "embedding_grad": lambda d: bench_embedding_grad(),
    "lazy_update": bench_lazy_update,
    "memory": bench_peak_memory,
    "encode": bench_encode,
    "explain": bench_explain,
    "multi": bench_multi,
    "multi_processes": bench_multi_processes,
}


def machine() -> dict[str, Any]:
    import platform

    return {"platform": jax.default_backend(), "devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind,
            "cpus": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
            "load_average": os.getloadavg()}


def markdown(results: dict[str, Any]) -> str:
    lines = ["| benchmark | figure | value |", "|---|---|---|"]
    for name, figures in results.items():
        if not isinstance(figures, dict):
            continue
        for key, value in figures.items():
            if isinstance(value, float):
                value = f"{value:.4g}"
            elif isinstance(value, dict):
                value = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
            lines.append(f"| {name} | {key} | {value} |")
    return "\n".join(lines)


def run_benchmarks(names: list[str], data_dir: str, out: pathlib.Path | None = None, precision: str = "float32"
                   ) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine()}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = (bench_vs_torch(data_dir, precision=precision) if name == "vs_torch"
                         else BENCHMARKS[name](data_dir))
    results["machine"]["load_average_end"] = os.getloadavg()
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(results, indent=2))
        out.with_suffix(".md").write_text(markdown(results) + "\n")
    return results



def main(argv: list[str] | None = None) -> int:
    """`python scripts/benchmark.py [--data-dir D] [--only a,b] [--out PREFIX]`."""
    from jaxcnn.cli import ArgumentParser  # usage errors as one line, exit status 2

    parser = ArgumentParser(prog="scripts/benchmark.py",
                            description="speed and memory benchmarks (Kim CNN on MR); JSON + markdown")
    parser.add_argument("--data-dir", default=None, help="data folder (default: JAXCNN_DATA_DIR)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated benchmark names (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="vs_torch: jaxcnn's arithmetic (the config field `precision`)")
    ns = parser.parse_args(argv)
    names = list(BENCHMARKS) if ns.only is None else [n.strip() for n in ns.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"--only: unknown benchmark {unknown[0]!r} (choices: {', '.join(BENCHMARKS)})")
    data_dir = ns.data_dir or os.environ.get("JAXCNN_DATA_DIR")
    if not data_dir:
        parser.error("--data-dir: the benchmarks read MR from a local data folder; give --data-dir or set "
                     "JAXCNN_DATA_DIR")
    results = run_benchmarks(names, data_dir, pathlib.Path(ns.out) if ns.out else None, precision=ns.precision)
    print(markdown(results))
    return 0
