"""What the built-in tasks share: their own model, or one from a factory of yours."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxcnn.errors import ConfigError


class BuiltinOrOwnModel:
    """A task's model slot: `model=None` for the task's own model, or `model=factory`, `factory(cfg, data)`
    returning a Linen module called the usual way (`linen_forward`).

    Attributes:
      name: the task's name (`default_name`, or `<default_name>-custom` with a factory unless `name` is given);
        saved with the checkpoints, so that loading a workdir can tell a model of another task.
    """

    default_name = "task"

    def __init__(self, model: Callable[[Any, Any], nn.Module] | None = None, name: str | None = None):
        self._model = model
        self.name = name or (self.default_name if model is None else f"{self.default_name}-custom")

    @property
    def own_model(self) -> bool:
        """True with a factory's model (the task's own tricks, such as folding or trimming, then stay off)."""
        return self._model is not None

    def factory_model(self, cfg: Any, data: Any, dropout: Any = None) -> nn.Module:
        if dropout is not None:
            raise ConfigError(f"--dropout: task {self.name!r} uses its own model, whose dropout rate cannot vary "
                              f"inside one program; run each rate as its own program")
        return self._model(cfg, data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def linen_forward(model: nn.Module, input_name: str):
    """A Linen module called the usual way, `model.apply(variables, batch[input_name], train=..., rngs={"dropout":
    step key})`, as the engine calls a forward (`jaxcnn.tasks.api.Forward`)."""

    def forward(variables, batch, *, train, rng, mutable, aux=None):
        del aux
        rngs = {"dropout": rng} if train else None
        return model.apply(variables, batch[input_name], train=train, rngs=rngs, mutable=mutable)

    return forward
