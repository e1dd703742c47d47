"""Multi-host data parallelism: 2 processes x 2 CPU devices on localhost (jax.distributed, gloo collectives)
train one model over a 4-device 'data' axis, each process feeding its own shard of every batch; the result
equals a single-process run on the same global batches."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.multi.common import flat_params, tiny_members, train_program, write_pool_file

WORKER = pathlib.Path(__file__).with_name("multihost_worker.py")
REPO = pathlib.Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    data_file = write_pool_file(tmp_path / "data")
    out = tmp_path / "params.npz"
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(i), "2", port, data_file, str(out), "1"],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(line for log in logs for line in log.splitlines()
                                                                 if "absl" not in line)[-3000:]
    got = np.load(out)
    assert got["mesh"].tolist() == [1, 4]  # one member, its batch split over 4 devices in 2 processes
    cfg, members, pool = tiny_members(data_file, 1)
    reference = flat_params(train_program(cfg, members, pool, devices=1))
    for name, value in reference.items():
        np.testing.assert_allclose(got[name], value, atol=1e-5, rtol=0, err_msg=name)
