"""Learning-rate schedules (docs/reference.md#optimizer): the rate changes once, at the end of every epoch.

Each gives the rates PyTorch's scheduler of the same name gives for the same settings, computed the way
PyTorch computes them (its step-by-step forms, so the floats agree to the last bit). A schedule is one
class with its ``Options`` schema (told apart by ``name``) plus one line in ``SCHEDULES``; the optimizer
owns it (``optimizer.schedule``), and its state is part of a run's checkpoint.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BeforeValidator, Field

from nnctl.schema import SIBLINGS, Configured, Schema, lookup, shorten


class ScheduleOptions(Schema):
    """The base of every schedule's options: each adds its `name` (a Literal) and its own keys."""

    name: str


class Schedule(Configured):
    """Base: the coming epoch's `learning_rate` and the number of epochs stepped (PyTorch's `last_epoch`)."""

    name: ClassVar[str] = "schedule"
    Options: ClassVar[type[ScheduleOptions]] = ScheduleOptions
    watches_loss: ClassVar[bool] = False  # True when the rates depend on the losses (plateau)

    def __init__(self, learning_rate: float) -> None:
        self.base_rate = learning_rate  # η₀, the optimizer's configured learning_rate
        self.learning_rate = learning_rate
        self.epoch = 0

    @classmethod
    def build(cls, options: Any, learning_rate: float) -> Schedule:
        """The schedule from validated `options` (an instance of `cls.Options`), starting at `learning_rate`."""
        return cls(learning_rate, **options.model_dump(exclude={"name"}))

    def step(self, loss: float) -> float:
        """An epoch ended with this watched loss: move on and return the next epoch's learning rate."""
        self.epoch += 1
        self.learning_rate = self.next_rate(loss)
        return self.learning_rate

    def next_rate(self, loss: float) -> float:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Everything `step` depends on, as JSON (saved in the checkpoint)."""
        return {"epoch": self.epoch, "learning_rate": self.learning_rate}

    def load_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.learning_rate = int(state["epoch"]), float(state["learning_rate"])

    def rates(self, epochs: int) -> list[float] | None:
        """The rate of each epoch 1…`epochs` from the start, or None when it depends on the losses."""
        if self.watches_loss:
            return None
        fresh = type(self)(self.base_rate, **self.config())
        return [fresh.learning_rate] + [fresh.step(math.nan) for _ in range(epochs - 1)]


class StepDecay(Schedule):
    """PyTorch's StepLR: η ← γ η after every `step_size` epochs, so epoch e + 1 uses η₀ γ^⌊e / step_size⌋."""

    name = "step"

    class Options(ScheduleOptions):
        name: Literal["step"]
        step_size: int = Field(ge=1, description="epochs between decays")
        gamma: float = Field(0.1, gt=0, description="factor applied at each decay")

    def __init__(self, learning_rate: float, step_size: int, gamma: float = 0.1) -> None:
        super().__init__(learning_rate)
        self.step_size, self.gamma = step_size, gamma

    def next_rate(self, loss: float) -> float:
        return self.learning_rate * self.gamma if self.epoch % self.step_size == 0 else self.learning_rate


class ExponentialDecay(Schedule):
    """PyTorch's ExponentialLR: η ← γ η after every epoch, so epoch e + 1 uses η₀ γ^e."""

    name = "exponential"

    class Options(ScheduleOptions):
        name: Literal["exponential"]
        gamma: float = Field(gt=0, description="factor applied after every epoch")

    def __init__(self, learning_rate: float, gamma: float) -> None:
        super().__init__(learning_rate)
        self.gamma = gamma

    def next_rate(self, loss: float) -> float:
        return self.learning_rate * self.gamma


class CosineAnnealing(Schedule):
    """PyTorch's CosineAnnealingLR: epoch e + 1 uses η_min + (η₀ − η_min)(1 + cos(π e / T_max)) / 2, from
    η₀ down to η_min at e = T_max and back up after it, computed by PyTorch's recursive form."""

    name = "cosine"

    class Options(ScheduleOptions):
        name: Literal["cosine"]
        t_max: int = Field(ge=1, description="epochs from η₀ down to min_lr")
        min_lr: float = Field(0.0, ge=0, description="η_min")

    def __init__(self, learning_rate: float, t_max: int, min_lr: float = 0.0) -> None:
        super().__init__(learning_rate)
        self.t_max, self.min_lr = t_max, min_lr

    def next_rate(self, loss: float) -> float:
        e, T, low, lr = self.epoch, self.t_max, self.min_lr, self.learning_rate
        if (e - 1 - T) % (2 * T) == 0:  # the step up from the trough, where the ratio below would be 0 / 0
            return lr + (self.base_rate - low) * (1 - math.cos(math.pi / T)) / 2
        return (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (lr - low) + low


class ReduceOnPlateau(Schedule):
    """PyTorch's ReduceLROnPlateau (mode min, relative threshold): η ← max(factor η, min_lr) once the watched
    loss (validation, else training) has not gone below best·(1 − threshold) for more than `patience` epochs."""

    name = "plateau"
    watches_loss = True
    EPS = 1e-8  # PyTorch's eps: a reduction smaller than this is skipped

    class Options(ScheduleOptions):
        name: Literal["plateau"]
        factor: float = Field(0.1, gt=0, lt=1, description="η ← factor · η")
        patience: int = Field(10, ge=0, description="epochs without improvement tolerated before a reduction")
        min_lr: float = Field(0.0, ge=0, description="the rate never goes below it")
        threshold: float = Field(1e-4, ge=0, lt=1, description="an improvement is a loss < best · (1 − threshold)")
        cooldown: int = Field(0, ge=0, description="epochs after a reduction during which bad epochs are not counted")

    def __init__(
        self,
        learning_rate: float,
        factor: float = 0.1,
        patience: int = 10,
        min_lr: float = 0.0,
        threshold: float = 1e-4,
        cooldown: int = 0,
    ) -> None:
        super().__init__(learning_rate)
        self.factor, self.patience, self.min_lr = factor, patience, min_lr
        self.threshold, self.cooldown = threshold, cooldown
        self.best = math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def next_rate(self, loss: float) -> float:
        if loss < self.best * (1.0 - self.threshold):
            self.best, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        lr = self.learning_rate
        if self.bad_epochs > self.patience:
            reduced = max(lr * self.factor, self.min_lr)
            if lr - reduced > self.EPS:
                lr = reduced
            self.cooldown_left, self.bad_epochs = self.cooldown, 0
        return lr

    def state(self) -> dict[str, Any]:
        best = None if math.isinf(self.best) else self.best  # JSON has no infinity
        return super().state() | {"best": best, "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.bad_epochs, self.cooldown_left = int(state["bad_epochs"]), int(state["cooldown_left"])


SCHEDULES: dict[str, type[Schedule]] = {
    "step": StepDecay,
    "exponential": ExponentialDecay,
    "cosine": CosineAnnealing,
    "plateau": ReduceOnPlateau,
}


def schedule_class(name: str) -> type[Schedule]:
    """Look a schedule up by its config name; the error lists every valid name."""
    return lookup(SCHEDULES, name, "schedule")


def schedule_union() -> Any:
    """The schedules' options as they are registered now, told apart by `name`; a bare name (`plateau`)
    stands for `{name: plateau}`."""
    members = [cls.Options for cls in SCHEDULES.values()]
    for member in members:
        SIBLINGS[member] = members

    names = ", ".join(SCHEDULES)

    def bare_name(value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" not in value:
            raise ValueError(f"name: required key is missing; expected one of: {names}")
        if not isinstance(value, (dict, ScheduleOptions)):
            raise ValueError(f"expected a schedule name ({names}) or a mapping with a name, got {shorten(value)}")
        return value

    return Annotated[Union[tuple(members)], Field(discriminator="name"), BeforeValidator(bare_name)]  # noqa: UP007
