"""Gradient-descent optimisers: they update named (param, grad) arrays in place and know nothing of layers.

An optimiser is one class with its ``Options`` schema (a subclass of ``OptimizerOptions``, which holds
the keys every optimiser shares: learning rate, its schedule, weight decay, gradient clipping) plus one
line in ``OPTIMIZERS``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from nnctl.schedules import SCHEDULES, Schedule, ScheduleOptions, schedule_union
from nnctl.schema import Schema, lookup

Parameters = Iterable[tuple[str, np.ndarray, np.ndarray]]  # (name, param, grad)
CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_: scale = C / (‖g‖ + 1e-6)
if TYPE_CHECKING:
    ScheduleSpec = ScheduleOptions
else:  # the schedules' options as a tagged union (nnctl.config re-types it with later registrations)
    ScheduleSpec = schedule_union()


class OptimizerOptions(Schema):
    """The keys every optimiser takes; each optimiser's Options adds its `name` (a Literal) and its own keys."""

    name: str = "sgd"
    learning_rate: float = Field(0.01, gt=0, description="η (of the first epoch, when there is a schedule)")
    schedule: ScheduleSpec | None = Field(None, description="how η changes at the end of every epoch")
    weight_decay: float = Field(0.0, ge=0, description="L2 λ: g ← g + λp")
    clip_norm: float | None = Field(None, gt=0, description="C: scale all gradients so their global L2 norm ≤ C")


def global_norm(gradients: Iterable[np.ndarray]) -> float:
    """‖g‖ = √(Σ over every array of Σ g²), the L2 norm of all gradients as one vector."""
    return math.sqrt(sum(float(np.vdot(g, g)) for g in gradients))  # vdot: a BLAS dot, no g² temporary


class Optimizer:
    """Base: gradient clipping, weight decay (g ← g + λp), the step count t and the learning-rate schedule;
    subclasses apply their rule."""

    name: ClassVar[str] = "optimizer"
    slots: ClassVar[tuple[str, ...]] = ()  # per-parameter state arrays, e.g. ("m", "s")
    Options: ClassVar[type[OptimizerOptions]] = OptimizerOptions

    def __init__(self, learning_rate: float, weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.schedule: Schedule | None = None  # steps `learning_rate` at the end of every epoch (`end_epoch`)
        self.grad_norm: float | None = None  # the global gradient norm of the last step, before clipping
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {}  # parameter name → slot → array

    @classmethod
    def build(cls, options: Any) -> Optimizer:
        """The optimiser from validated `options` (an instance of `cls.Options`), with its schedule."""
        optimizer = cls(**options.model_dump(exclude={"name", "schedule"}))
        spec = options.schedule
        if spec is not None:
            optimizer.schedule = SCHEDULES[spec.name].build(spec, options.learning_rate)
        return optimizer

    def end_epoch(self, loss: float) -> None:
        """An epoch ended with this watched loss: the schedule, if any, sets the next epoch's learning rate."""
        if self.schedule is not None:
            self.learning_rate = self.schedule.step(loss)

    def step(self, parameters: Parameters) -> None:
        """Apply one update to every parameter, in place: clip (g ← g·C / (‖g‖ + 1e-6) when that is < 1),
        then weight decay, then the rule. The gradient arrays themselves are never written."""
        self.t += 1
        decay, state, update = self.weight_decay, self.state, self.update  # looked up once per step, not per array
        scale = 1.0
        if self.clip_norm is not None:
            parameters = list(parameters)
            self.grad_norm = global_norm(g for _, _, g in parameters)
            scale = min(self.clip_norm / (self.grad_norm + CLIP_EPS), 1.0)
        for name, p, g in parameters:
            if scale < 1.0:
                g = g * scale
            if decay:
                g = g + decay * p
            slots = state.get(name)
            if slots is None:
                slots = state[name] = {slot: np.zeros_like(p) for slot in self.slots}
            update(p, g, slots)

    def update(self, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every state array under a flat key "<param>/<slot>", for checkpoints."""
        return {f"{name}/{slot}": a for name, slots in self.state.items() for slot, a in slots.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray], t: int) -> None:
        """Restore what ``state_arrays`` returned, and the step count."""
        self.t = t
        self.state = {}
        for key, a in arrays.items():
            name, slot = key.rsplit("/", 1)
            self.state.setdefault(name, {})[slot] = np.array(a)


class SGD(Optimizer):
    """p ← p − η g"""

    name = "sgd"

    class Options(OptimizerOptions):
        name: Literal["sgd"] = "sgd"

    def update(self, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray]) -> None:
        p -= self.learning_rate * g


class Momentum(Optimizer):
    """v ← μ v + g;  p ← p − η v"""

    name = "momentum"
    slots = ("v",)

    class Options(OptimizerOptions):
        name: Literal["momentum"]
        momentum: float = Field(0.9, ge=0, lt=1, description="μ")

    def __init__(
        self, learning_rate: float, momentum: float = 0.9, weight_decay: float = 0.0, clip_norm: float | None = None
    ) -> None:
        super().__init__(learning_rate, weight_decay, clip_norm)
        self.momentum = momentum

    def update(self, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray]) -> None:
        v = slots["v"]
        v *= self.momentum
        v += g
        p -= self.learning_rate * v


class Adam(Optimizer):
    """m ← β1 m + (1 − β1) g;  s ← β2 s + (1 − β2) g²;  p ← p − η m̂ / (√ŝ + δ), with bias correction 1 − βᵗ."""

    name = "adam"
    slots = ("m", "s")

    class Options(OptimizerOptions):
        name: Literal["adam"]
        beta1: float = Field(0.9, ge=0, lt=1)
        beta2: float = Field(0.999, ge=0, lt=1)
        delta: float = Field(1e-8, gt=0, description="δ in the denominator")

    def __init__(
        self,
        learning_rate: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        delta: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(learning_rate, weight_decay, clip_norm)
        self.beta1, self.beta2, self.delta = beta1, beta2, delta

    def update(self, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray]) -> None:
        m, s = slots["m"], slots["s"]
        b1, b2 = self.beta1, self.beta2
        m *= b1
        m += (1 - b1) * g
        s *= b2
        s += (1 - b2) * (g * g)
        m_hat = m / (1 - b1**self.t)
        s_hat = s / (1 - b2**self.t)
        np.sqrt(s_hat, out=s_hat)
        s_hat += self.delta
        m_hat *= self.learning_rate
        m_hat /= s_hat
        p -= m_hat


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def optimizer_class(name: str) -> type[Optimizer]:
    """Look an optimizer up by its config name; the error lists every valid name."""
    return lookup(OPTIMIZERS, name, "optimizer")
