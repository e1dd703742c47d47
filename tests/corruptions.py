"""Ways to damage one Orbax checkpoint step folder, shared by the checkpoint and fault-injection tests."""

from __future__ import annotations

import glob
import os
import pathlib
import shutil


def array_files(step: pathlib.Path) -> list[str]:
    # Every OCDBT data file, not only the largest: which one holds the arrays a restore reads varies from run to
    # run, and damaging one that the restore never reads (seen once in CI) is no fault at all.
    return glob.glob(str(step / "state" / "**" / "d" / "*"), recursive=True)


def truncate_array_file(step: pathlib.Path) -> None:
    for path in array_files(step):
        os.truncate(path, os.path.getsize(path) // 2)


def delete_array_file(step: pathlib.Path) -> None:
    for path in array_files(step):
        os.unlink(path)


def garble_metadata(step: pathlib.Path) -> None:
    (step / "state" / "_METADATA").write_text('{"tree_metadata": {"params"')


def empty_folder(step: pathlib.Path) -> None:
    shutil.rmtree(step)
    step.mkdir()
