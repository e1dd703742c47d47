"""WorkdirLock across processes, check_config, atomic writes."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

from jaxcnn.errors import WorkdirError
from jaxcnn.train.workdir import WorkdirLock, atomic_write_json, atomic_write_text, check_config, differing_keys

REPO = pathlib.Path(__file__).resolve().parents[2]

_HOLDER = textwrap.dedent("""
    import sys, time
    from jaxcnn.train.workdir import WorkdirLock
    WorkdirLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(120)
""")


def _start_holder(workdir: pathlib.Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(workdir)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    line = holder.stdout.readline()
    assert line == "locked\n", holder.stderr.read()
    return holder


def test_lock_held_by_another_process_refuses_until_it_is_killed(tmp_path):
    workdir = tmp_path / "run"
    holder = _start_holder(workdir)
    try:
        with pytest.raises(WorkdirError, match=rf"^{workdir} is in use by pid {holder.pid} on \S+ \(started "
                                               rf"\d{{4}}-\d\d-\d\dT[^)]+\); wait for it to finish or use another "
                                               rf"--workdir$"):
            WorkdirLock(workdir).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
        holder.stderr.close()
    assert holder.returncode == -signal.SIGKILL
    assert (workdir / ".lock").exists()  # the stale lock file is left behind, and does not block
    with WorkdirLock(workdir) as lock:
        assert lock.held
        assert json.loads((workdir / ".lock").read_text())["pid"] == os.getpid()
    assert not lock.held


def test_lock_is_exclusive_within_a_process_too_and_reusable_after_release(tmp_path):
    with WorkdirLock(tmp_path):
        with pytest.raises(WorkdirError, match=f"in use by pid {os.getpid()} "):
            WorkdirLock(tmp_path).acquire()
    with WorkdirLock(tmp_path) as again:
        assert again.held


def test_lock_on_a_file_path_is_a_workdir_error(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(WorkdirError, match=f"^{not_a_dir}: exists and is not a folder$"):
        WorkdirLock(not_a_dir).acquire()


CONFIG = {"dataset": "mr", "epochs": 25, "model": {"variant": "non-static", "filter_sizes": (3, 4, 5)},
          "data_dir": pathlib.Path("/data")}


def test_check_config_writes_then_accepts_the_same_config(tmp_path):
    check_config(tmp_path, CONFIG)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["model"]["filter_sizes"] == [3, 4, 5] and stored["data_dir"] == "/data"
    check_config(tmp_path, CONFIG)  # tuples vs lists and paths vs strings compare equal


def test_check_config_names_the_differing_keys(tmp_path):
    check_config(tmp_path, CONFIG)
    with pytest.raises(WorkdirError) as e:
        check_config(tmp_path, dict(CONFIG, dataset="trec"))
    assert str(e.value) == (f'{tmp_path} holds a run with dataset="mr" (this command: dataset="trec"); '
                            f"use another --workdir")
    changed = dict(CONFIG, dataset="trec", model={"variant": "rand", "filter_sizes": (3, 4, 5)}, seed=1)
    with pytest.raises(WorkdirError, match=r'with dataset="mr", model.variant="non-static", seed unset '
                                           r'\(this command: dataset="trec", model.variant="rand", seed=1\)'):
        check_config(tmp_path, changed)
    assert json.loads((tmp_path / "config.json").read_text())["dataset"] == "mr"  # a refusal changes nothing


def test_check_config_ignores_listed_keys_and_records_their_new_values(tmp_path):
    check_config(tmp_path, CONFIG)
    check_config(tmp_path, dict(CONFIG, epochs=50), ignore=["epochs"])
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 50
    assert differing_keys(CONFIG, dict(CONFIG, model={"variant": "rand"}), ignore=["model"]) == []
    assert differing_keys(CONFIG, dict(CONFIG, epochs=1, dataset="sst2")) == ["dataset", "epochs"]


def test_check_config_reports_a_garbled_file_with_its_line(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "dataset": "mr",\n  oops\n}\n')
    with pytest.raises(WorkdirError, match=rf"^{tmp_path}/config.json:3: not valid JSON"):
        check_config(tmp_path, CONFIG)


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "out.json"
    atomic_write_json(target, {"a": (1, 2)})
    atomic_write_text(tmp_path / "sub" / "note.txt", "héllo\n")
    atomic_write_json(target, {"b": 3})
    assert json.loads(target.read_text()) == {"b": 3}
    assert (tmp_path / "sub" / "note.txt").read_text(encoding="utf-8") == "héllo\n"
    assert sorted(os.listdir(tmp_path / "sub")) == ["note.txt", "out.json"]
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(WorkdirError, match=f"^{blocker}: exists and is not a folder$"):
        atomic_write_text(blocker / "x.txt", "x")
