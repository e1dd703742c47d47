"""Programs of many members: a member inside the vmapped program equals the same member trained alone (a program
of one member, what `jaxcnn train` runs)."""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
import pytest

from jaxcnn import tasks
from jaxcnn.errors import ConfigError
from jaxcnn.train.parallel import make_mesh
from jaxcnn.train.program import Member, Program
from jaxcnn.train.trainer import Run
from tests.multi.common import flat_params, tiny_members, train_program, write_pool_file


# Kim's optimizer: Adadelta, whose embedding rows the engine updates lazily (the path most runs take).
KIM_OPTIMIZER = {"optimizer": "adadelta", "lr": None}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three members (folds 0-2, seeds 10-12) trained two epochs as one program on one device."""
    data_file = write_pool_file(tmp_path_factory.mktemp("data"))
    cfg, members, pool = tiny_members(data_file, 3, **KIM_OPTIMIZER)
    return data_file, cfg, members, pool, flat_params(train_program(cfg, members, pool))


def alone(cfg, member: Member, data, tmp_path: pathlib.Path, epochs: int = 2) -> dict[str, np.ndarray]:
    """The member trained alone, as `jaxcnn train` trains it (a program of one member), on the same data: its
    searched values (if any) as the config's own."""
    lone = Member(member.name, member.seed, member.train, member.dev, member.test, member.fold, member.weights)
    flat = flat_params(train_program(cfg.replace(**member.hparams), [lone], data, epochs=epochs))
    return {name: value[0] for name, value in flat.items()}


def assert_member(stacked: dict[str, np.ndarray], k: int, single: dict[str, np.ndarray], atol: float = 1e-5):
    assert stacked.keys() == single.keys()
    for name, value in single.items():
        np.testing.assert_allclose(stacked[name][k], value, atol=atol, rtol=0, err_msg=name)


def test_member_equals_the_same_member_trained_alone(setup, tmp_path):
    _, cfg, members, pool, stacked = setup
    assert_member(stacked, 1, alone(cfg, members[1], pool, tmp_path))


@pytest.mark.parametrize("chunk", [None, 2])
def test_vmapped_and_chunked_programs_equal_the_looped_one(setup, chunk):
    # On one CPU device the program loops over members (chunk 1, the default there); all-vmapped (None) and
    # vmapped two at a time (2 of 3: a remainder chunk) train the same members.
    _, cfg, members, pool, looped = setup
    program = train_program(cfg, members, pool, chunk=chunk)
    assert program.chunk == chunk and Program(cfg.replace(devices=1), tasks.get("text"), pool, members).chunk == 1
    other = flat_params(program)
    for k in range(len(members)):
        assert_member(other, k, {n: v[k] for n, v in looped.items()})
    # Evaluation and logits go through the same mapping.
    looped_program = Program(cfg.replace(devices=1), tasks.get("text"), pool, members)
    looped_program.state = looped_program.state.replace(params=program.state.params)
    for a, b in zip(program.evaluate("dev"), looped_program.evaluate("dev")):
        assert a["accuracy"] == b["accuracy"]


def test_members_really_differ(setup):
    *_, stacked = setup
    kernel = stacked["head/kernel"]
    assert not np.allclose(kernel[0], kernel[1]) and not np.allclose(kernel[1], kernel[2])


@pytest.mark.multidevice
def test_members_and_data_sharded_over_8_devices_equal_one_device(setup):
    data_file, *_ , one_device = setup
    cfg, members, pool = tiny_members(data_file, 4, **KIM_OPTIMIZER)
    program = train_program(cfg, members, pool, devices=8)
    assert dict(program.mesh.shape) == {"members": 4, "data": 2}
    for leaf in jax.tree.leaves(program.state.params):
        assert leaf.sharding.spec[0] == "members"
    eight = flat_params(program)
    for k in range(3):  # the first three members are the module's members
        assert_member(eight, k, {n: v[k] for n, v in one_device.items()})


def test_mesh_gives_members_the_largest_fitting_divisor():
    assert dict(make_mesh(10, 8).shape) == {"members": 2, "data": 4}
    assert dict(make_mesh(8, 8).shape) == {"members": 8, "data": 1}
    assert dict(make_mesh(5, 8).shape) == {"members": 1, "data": 8}
    assert dict(make_mesh(3, 1).shape) == {"members": 1, "data": 1}
    assert dict(make_mesh(1, 8).shape) == {"members": 1, "data": 8}  # one member: data parallelism
    with pytest.raises(ConfigError, match="--devices"):
        make_mesh(2, 99)


def test_inactive_member_does_not_move_and_the_others_do(setup):
    _, cfg, members, pool, _ = setup
    program = Program(cfg.replace(devices=1), tasks.get("text"), pool, members)
    assert program.state.sparse is not None  # Adadelta's lazy embedding rows, as in `jaxcnn train`
    before = flat_params(program)
    sums, bad = program.train_epoch(1, [True, False, True])
    after = flat_params(program)
    np.testing.assert_array_equal(after["head/kernel"][1], before["head/kernel"][1])
    assert not np.allclose(after["head/kernel"][0], before["head/kernel"][0])
    assert sums["count"][1] == 0 and sums["count"][0] == len(members[0].train)
    assert (bad == -1).all()


def test_unit_weights_change_nothing(setup, tmp_path):
    _, cfg, members, pool, stacked = setup
    weighted = [Member(m.name, m.seed, m.train, m.dev, m.test, m.fold, np.ones(len(m.train), np.float32))
                for m in members]
    assert_member(flat_params(train_program(cfg, weighted, pool)), 2, {n: v[2] for n, v in stacked.items()},
                  atol=1e-6)


@pytest.mark.slow
def test_vmapped_lr_and_dropout_equal_separate_runs(setup, tmp_path):
    data_file, *_ = setup
    cfg, members, pool = tiny_members(data_file, 2, optimizer="adadelta", lr=None, lazy_embeddings=False)
    values = [{"lr": 0.5, "dropout": 0.25}, {"lr": 2.0, "dropout": 0.6}]
    searched = [Member(f"h{i}", 3, members[0].train, members[0].dev, members[0].test, 0, hparams=v)
                for i, v in enumerate(values)]
    stacked = flat_params(train_program(cfg, searched, pool))
    for k in range(2):
        assert_member(stacked, k, alone(cfg, searched[k], pool, tmp_path / str(k)))


def test_members_must_agree_on_what_they_vary(setup):
    _, cfg, members, pool, _ = setup
    m = members[0]
    with pytest.raises(ConfigError, match="--maps: cannot vary"):
        Program(cfg, tasks.get("text"), pool, [Member("a", 0, m.train, m.dev, m.test, hparams={"maps": 4})])
    with pytest.raises(ConfigError, match="same hyper-parameters"):
        Program(cfg, tasks.get("text"), pool, [Member("a", 0, m.train, m.dev, m.test, hparams={"lr": 0.1}),
                                               Member("b", 1, m.train, m.dev, m.test)])


@pytest.mark.slow
def test_run_selects_per_member_and_resumes_exactly(setup, tmp_path):
    _, cfg, members, pool, _ = setup
    cfg = cfg.replace(devices=1)
    task = tasks.get("text")
    straight = Run(cfg.replace(epochs=3), task, pool, members, tmp_path / "straight").run()["members"]
    Run(cfg.replace(epochs=2), task, pool, members, tmp_path / "resumed").run()
    resumed_run = Run(cfg.replace(epochs=3), task, pool, members, tmp_path / "resumed")
    resumed = resumed_run.run()["members"]
    for a, b in zip(straight, resumed):
        assert a["best_epoch"] == b["best_epoch"] and a["test_accuracy"] == b["test_accuracy"]
        assert 1 <= a["best_epoch"] <= 3
    saved = json.loads((tmp_path / "resumed" / "summary.json").read_text())["members"]
    assert [s["name"] for s in saved] == ["m0", "m1", "m2"]
    records = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["epoch"], r["member"]) for r in records if r["kind"] == "dev") == [
        (e, k) for e in (1, 2, 3) for k in range(3)]
    # The best params are each member's own best epoch: their dev accuracy is the recorded best.
    dev = resumed_run.program.evaluate("dev", best=True)
    assert [d["accuracy"] for d in dev] == [s["dev_accuracy"] for s in resumed]
