"""The :class:`Task` protocol and the registry of tasks."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

#: name → task; a model says its task in its class attribute ``task`` (default ``"separation"``)
TASKS: dict[str, "Task"] = {}


class Task:
    """One kind of model.

    Attributes:
        name: the value of a model's ``task`` attribute.
        inputs: the signals the model takes, in call order (e.g. ``("mixture",)``).
        losses: ``optim.loss`` names → objectives ``f(estimate, target) -> scalar``.
        default_loss: the objective ``optim.loss=auto`` picks.
    """

    name: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    losses: ClassVar[dict[str, Callable[[Tensor, Tensor], Tensor]]]
    default_loss: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        TASKS[cls.name] = cls()

    def loss(self, name: str, args: dict[str, Any] | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """``optim.loss`` → the objective (``"auto"``: :attr:`default_loss`), with the keyword
        arguments ``args`` (``optim.loss_args``) bound; a ``ValueError`` names the choices, the
        task a loss of another task belongs to, or an argument the objective does not take."""
        if name == "auto":
            name = self.default_loss
        if name in self.losses:
            fn = self.losses[name]
            if not args:
                return fn
            takes = [p.name for p in list(inspect.signature(fn).parameters.values())[2:]]
            bad = sorted(set(args) - set(takes))
            if bad:
                raise ValueError(f"optim.loss_args: {name} takes no argument {', '.join(map(repr, bad))}; "
                                 f"it takes {', '.join(takes) or 'none'}")
            return functools.partial(fn, **args)
        for other in TASKS.values():
            if name in other.losses:
                raise ValueError(f"optim.loss: {name} is an objective of the {other.name} task, but the model's task is {self.name}")
        known = sorted({n for t in TASKS.values() for n in t.losses})
        raise ValueError(f"optim.loss: unknown loss {name!r}; choose auto or one of {known}")

    def datasets(self, data: Any, sample_rate: int, n_src: int, total: int, seed: int) -> tuple[Dataset, Dataset]:
        """Training (``total`` examples) and validation sets from the ``data`` section of a
        training config; ``ValueError`` when it names no usable data."""
        raise NotImplementedError

    def training_output(self, net: torch.nn.Module, inputs: list[Tensor]) -> Tensor:
        """What the objectives compare with the target, for a batch of ``inputs``."""
        return net(*inputs)

    def validation_gain(self, model: torch.nn.Module, example: tuple[Tensor, ...]) -> float:
        """The validation score (dB over doing nothing) of one example of the validation set
        (its tensors already batched and on the model's device)."""
        raise NotImplementedError


def task_of(model: torch.nn.Module) -> Task:
    """The task of ``model`` (its ``task`` attribute; ``"separation"`` when it has none)."""
    name = getattr(model, "task", "separation")
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"{getattr(model, 'name', type(model).__name__)}: unknown task {name!r}; "
                         f"known: {', '.join(sorted(TASKS))}") from None
