"""Tasks: from a config to data, a model and its forward function (`jaxcnn.tasks.api.Task`).

`get(name)` returns a registered task: "text" (Kim's CNN on sentences) or "image". Your own model plugs in as
`TextTask(model=...)` or `ImageTask(model=...)`, or as any class that implements `Task`.
"""

from __future__ import annotations

from jaxcnn.errors import ConfigError
from jaxcnn.tasks.api import Examples, Forward, Task, TaskData
from jaxcnn.tasks.image import ImageData, ImageTask
from jaxcnn.tasks.text import TextData, TextTask

TASKS = ("text", "image")
_REGISTERED: dict[str, Task] = {}

__all__ = ["TASKS", "Examples", "Forward", "ImageData", "ImageTask", "Task", "TaskData", "TextData", "TextTask",
           "get"]


def get(name: str) -> Task:
    """The registered task called `name`."""
    if name not in TASKS:
        raise ConfigError(f"--task: unknown task {name!r} (choices: {', '.join(TASKS)}); a task of your own is "
                          f"passed as an object (train_and_evaluate(..., task=...), jaxcnn.load(..., task=...))")
    if name not in _REGISTERED:
        _REGISTERED[name] = TextTask() if name == "text" else ImageTask()
    return _REGISTERED[name]
