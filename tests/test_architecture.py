"""The package's shape: no import cycles (imports inside functions count), a library that changes nothing global
when imported, and tooling kept outside it."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import jaxcnn

PACKAGE = pathlib.Path(jaxcnn.__file__).parent
REPO = PACKAGE.parent


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: jaxcnn modules it imports}, from every import statement anywhere in its source."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, *([base] if base else [])])
                # `from jaxcnn import data` imports the submodule jaxcnn.data; `from x import name` imports x.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t.startswith("jaxcnn"):
                    target = resolve(t)
                    if target and target != module:
                        graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def package_of(module: str) -> str:
    """`jaxcnn.train.program` -> `jaxcnn.train`; a top-level module is its own unit; the root package `jaxcnn`."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_import_cycles_among_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycles_among_subpackages():
    graph = import_graph()
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if module == "jaxcnn":  # the root's lazy `load` is the package's entry point, above everything
            continue
        unit = package_of(module)
        packages.setdefault(unit, set()).update(package_of(t) for t in targets if package_of(t) not in (unit, "jaxcnn"))
    for unit in packages:
        packages[unit] &= set(packages)
    assert cycles(packages) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


_SNAPSHOT = r"""
import json, logging, sys, warnings

def snapshot():
    loggers = {"": logging.getLogger()}
    loggers.update({n: l for n, l in logging.Logger.manager.loggerDict.items() if isinstance(l, logging.Logger)})
    return {"unraisablehook": repr(sys.unraisablehook), "excepthook": repr(sys.excepthook),
            "showwarning": repr(warnings.showwarning), "warning_filters": len(warnings.filters),
            "filters": {n: [repr(f) for f in l.filters] for n, l in loggers.items() if l.filters},
            "handlers": {n: len(l.handlers) for n, l in loggers.items() if l.handlers}}

# The third-party libraries first: what they do on import is theirs, not jaxcnn's.
import jax, flax.linen, optax, orbax.checkpoint, datasets, numpy, matplotlib
before = snapshot()
import importlib, pkgutil, jaxcnn
names = [m.name for m in pkgutil.walk_packages(jaxcnn.__path__, "jaxcnn.")]
for name in names:
    importlib.import_module(name)
after = snapshot()
print(json.dumps({"before": before, "after": after, "modules": len(names)}))
"""


def test_importing_every_module_changes_nothing_global():
    out = subprocess.run([sys.executable, "-c", _SNAPSHOT], capture_output=True, text=True, check=True,
                         timeout=300, cwd=REPO)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] > 40
    assert result["after"] == result["before"]


def test_the_cli_installs_its_hooks_when_it_runs(tmp_path):
    code = ("import sys, logging; before = sys.unraisablehook; from jaxcnn import cli; assert sys.unraisablehook "
            "is before; code = cli.main(['evaluate', '--workdir', sys.argv[1]]); "
            "print(sys.unraisablehook is not before, len(logging.getLogger('asyncio').filters))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none")], capture_output=True, text=True,
                         timeout=300, cwd=REPO)
    assert out.stdout.split() == ["True", "1"], out.stderr


def test_the_package_holds_the_library_only():
    names = {p.name for p in PACKAGE.rglob("*.py")}
    assert not names & {"bench.py", "bench_multi.py", "reliability.py", "batching.py"}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "hasattr(task" not in text and "hasattr(self.task" not in text, path  # the Task protocol says it
        # Fault injection and other harnesses arm themselves through public hooks (jaxcnn.train.Callback).
        assert ".__init__ = " not in text and "COMMANDS[" not in text.replace("COMMANDS[ns.command]", ""), path
