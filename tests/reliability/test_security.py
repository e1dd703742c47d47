"""No pickle or eval anywhere; dataset names and files cannot leave the data folder; data files are only read;
a training run writes nothing outside its workdir."""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

import jaxcnn
from jaxcnn import cli
from tools import faults as reliability
from jaxcnn.data import registry
from jaxcnn.errors import ConfigError

PACKAGE = pathlib.Path(jaxcnn.__file__).parent
UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
UNSAFE_CALLS = {("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("torch", "load"),
                ("os", "system"), ("os", "popen")}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def unsafe_uses(source: str, filename: str = "<source>") -> list[str]:
    """`file:line: what` for every unsafe deserialisation or code execution in `source` (by its syntax tree, so
    strings and comments that mention them do not count, and aliases do not hide them)."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            parts = tuple(name.split("."))
            if name in UNSAFE_BUILTINS or name.startswith("builtins.") and parts[-1] in UNSAFE_BUILTINS:
                found.append(f"{where}: {name}(...)")
            if len(parts) >= 2 and parts[-2:] in UNSAFE_CALLS:
                found.append(f"{where}: {name}(...)")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where}: {name}(allow_pickle=...)")
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where}: {name}(shell=...)")
    return found


def test_the_checker_finds_what_it_looks_for():
    bad = textwrap.dedent("""
        import pickle as p, json
        from dill import loads
        import numpy as np, yaml, subprocess
        np.load("x.npy", allow_pickle=True)
        yaml.load(open("c.yaml"))
        eval("1 + 1"); exec("x = 1"); builtins.eval("2")
        subprocess.run("ls", shell=True)
        text = "pickle.loads and eval( in a string are fine"  # so is eval( in a comment
        np.load("y.npy", allow_pickle=False)
    """)
    assert [line.split(": ", 1)[1] for line in unsafe_uses(bad)] == [
        "import pickle", "from dill import ...", "np.load(allow_pickle=...)", "yaml.load(...)", "eval(...)",
        "exec(...)", "builtins.eval(...)", "subprocess.run(shell=...)"]


def test_no_pickle_eval_exec_or_unsafe_loader_anywhere_in_the_package():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    found = [hit for f in files for hit in unsafe_uses(f.read_text(encoding="utf-8"), str(f.relative_to(PACKAGE)))]
    assert found == []


@pytest.mark.parametrize("name", ["../mr", "mr/../../etc", "..", "/etc/passwd", "kim/../mr", "~root"])
def test_dataset_names_cannot_escape_the_data_folder(tmp_path, capsys, name):
    with pytest.raises(ConfigError, match="--dataset: unknown dataset"):
        registry.load_splits(name, tmp_path)
    assert cli.main(["train", "--workdir", str(tmp_path / "w"), "--dataset", name, "--data-dir", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err


@pytest.mark.parametrize("rel", ["../outside.txt", "kim/../../outside.txt", "/etc/passwd", "..\\outside.txt"])
def test_dataset_files_must_stay_inside_the_data_folder(tmp_path, rel):
    (tmp_path / "outside.txt").write_text("0 leaked\n1 leaked\n")
    (tmp_path / "data").mkdir()
    spec = registry.DatasetSpec(**{**registry.DATASETS["subj"].__dict__, "local_files": (("train", rel),)})
    with pytest.raises(ConfigError, match="must be a relative path inside the data folder, without '..'"):
        registry._local_kim(tmp_path / "data", spec)


@pytest.mark.parametrize("ref", ["foo/..", "../foo", "./foo", "foo/./bar", "a/b/c", "/abs", "foo/.hidden"])
def test_hub_references_are_plain_owner_and_name(ref):
    assert not registry._is_hub_ref(ref)
    assert registry._is_hub_ref("stanfordnlp/sst2") and registry._is_hub_ref("imdb")


_AUDITED_RUN = textwrap.dedent("""
    import json, os, sys
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    events = []

    def path_of(p):
        return os.path.abspath(os.fsdecode(p)) if isinstance(p, (str, bytes, os.PathLike)) else None

    def hook(event, args):
        if event == "open" and path_of(args[0]):
            mode, flags = args[1], args[2]
            writing = any(c in mode for c in "wax+") if mode else bool(flags & WRITE)
            events.append(("write" if writing else "read", path_of(args[0])))
        elif event in ("os.rename", "os.replace", "os.mkdir", "os.truncate", "os.chmod", "os.symlink", "os.link",
                       "os.utime", "shutil.rmtree", "shutil.copyfile", "shutil.move"):
            events.extend((event, path_of(a)) for a in args[:2] if path_of(a))
        elif event in ("os.remove", "os.rmdir") and args[-1] is None:  # with a dir_fd: inside an audited rmtree
            events.append((event, path_of(args[0])))

    sys.addaudithook(hook)
    from jaxcnn import cli
    code = cli.main(sys.argv[2:])
    seen = list(events)  # before this script's own log file joins them
    with open(sys.argv[1], "w") as f:
        json.dump({"code": code, "events": seen}, f)
""")


def _tree(root: pathlib.Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_a_run_reads_its_data_read_only_and_writes_only_its_workdir(tiny, tmp_path):
    """A tiny run with every output on, HOME, TMPDIR and the working directory pointed at empty folders, and an
    audit hook recording every file the interpreter opens for writing, creates, renames or deletes (TensorStore
    and XLA write from C++, unseen by the hook: the folder trees catch those)."""
    home, tmp, cwd, workdir = (tmp_path / n for n in ("home", "tmp", "cwd", "w"))
    for d in (home, tmp, cwd):
        d.mkdir()
    data = pathlib.Path(tiny.files["train_file"]).parent
    data_before = _tree(data)
    log = tmp_path / "audit.json"
    env = dict(tiny.env, HOME=str(home), TMPDIR=str(tmp), PYTHONPATH=str(PACKAGE.parent))
    env.pop("MPLCONFIGDIR", None)
    env.pop("XDG_CACHE_HOME", None)
    proc = subprocess.run([sys.executable, "-c", _AUDITED_RUN, str(log),
                           *tiny.args(workdir, epochs=2, extra=["--plots", "--tensorboard"])],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert log.exists(), proc.stderr[-3000:]
    record = json.loads(log.read_text())
    assert record["code"] == 0, proc.stderr[-3000:]
    events = record["events"]
    reads = {p for kind, p in events if kind == "read"}
    assert {str(pathlib.Path(tiny.files[k]).resolve()) for k in tiny.files} <= reads
    assert not [p for kind, p in events if kind != "read" and p.startswith(str(data))], "wrote into the data folder"
    cache = tiny.env["JAX_COMPILATION_CACHE_DIR"]  # set on purpose by these tests
    # matplotlib keeps its font cache per user (MPLCONFIGDIR, else ~/.cache/matplotlib); tempfile probes TMPDIR
    # once with a file it deletes at once.
    allowed = (str(workdir), cache, "/dev/null", str(home / ".cache" / "matplotlib"),
               str(home / ".config" / "matplotlib"), str(home / ".cache"), str(home / ".config"), str(tmp))
    outside = sorted({f"{kind} {p}" for kind, p in events if kind != "read" and not p.startswith(allowed)})
    assert outside == [], outside
    assert data_before == _tree(data)
    assert list(cwd.iterdir()) == [] and list(tmp.iterdir()) == []
    assert {p.relative_to(home).parts[:2] for p in home.rglob("*")} <= {(".cache",), (".cache", "matplotlib"),
                                                                         (".config",), (".config", "matplotlib")}
    produced = {p.name for p in workdir.iterdir()}
    assert {"config.json", "checkpoints", "metrics.jsonl", "summary.json", "tensorboard", "curves.png",
            "confusion.png"} <= produced


def test_the_fault_wrapper_is_outside_the_package():
    """`jaxcnn` never reads JAXCNN_FAULT: only `python -m tools.faults`, beside the package, arms faults."""
    users = [f for f in PACKAGE.rglob("*.py") if reliability.FAULT_ENV in f.read_text(encoding="utf-8")
             or "FAULT_ENV" in f.read_text(encoding="utf-8")]
    assert users == []
    assert reliability.FAULT_ENV in pathlib.Path(reliability.__file__).read_text(encoding="utf-8")
