"""What the `jaxcnn` command installs in its own process, and a library must not: keeping the echoes of a failed
checkpoint read or write out of the output. Plain Python (no jax or Orbax import), so the command installs it
before anything slow.
"""

from __future__ import annotations

import logging
import sys


class _AbandonedOrbaxTasks(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" reports for Orbax's own tasks: when one read or write
    of a checkpoint fails, Orbax abandons its sibling tasks, and asyncio logs each one's error (a traceback) when
    it is collected, at any later moment. The failure itself reaches the manager as an exception and is reported
    there in one line; other tasks' reports pass. A task may name Orbax's coroutine, or only asyncio's wrapper
    around a TensorStore future, whose error then carries its `tensorstore_spec`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Task exception was never retrieved")
                    and ("orbax" in message or "tensorstore" in message))


_process_hooks_installed = False


def install_process_hooks() -> None:
    """Keeps the echoes of a failed checkpoint read or write out of a program's output, for the whole process.

    A library must not change its importer's process, so importing jaxcnn installs nothing; the `jaxcnn` command
    calls this (once is enough; more calls do nothing); so can a program of yours that wants the same. It adds `_AbandonedOrbaxTasks` to the "asyncio" logger,
    and wraps `sys.unraisablehook` to drop one report: a TensorStore write that Orbax abandoned can finish after
    Orbax closed its event loop, and its callback's RuntimeError (raised in asyncio's `_check_closed`) reaches
    the hook with no object, at any moment. The failure itself is already reported by the manager in one line;
    every other report passes.
    """
    global _process_hooks_installed
    if _process_hooks_installed:
        return
    _process_hooks_installed = True
    logging.getLogger("asyncio").addFilter(_AbandonedOrbaxTasks())
    previous = sys.unraisablehook

    def hook(unraisable):
        exc, tb = unraisable.exc_value, unraisable.exc_traceback
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        code = None if tb is None else tb.tb_frame.f_code
        if (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed" and code is not None
                and code.co_name == "_check_closed" and "asyncio" in code.co_filename):
            return
        previous(unraisable)

    sys.unraisablehook = hook
