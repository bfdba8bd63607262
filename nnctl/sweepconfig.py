"""The `sweep:` section of a config and the trials it stands for (docs/reference.md#sweeps).

A sweep names dotted config keys (as `--set` takes them) and, for each, a list of values or, for
random search, a distribution. Trials come in a fixed order: grid points (the first key varies
slowest) or `trials` random points drawn key by key from `numpy.random.default_rng(seed)` (the
config's `seed`), each point once per seed of `seeds` (seeds innermost), numbered from 1.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_serializer, model_validator

from nnctl.schema import Schema, describe, shorten
from nnctl.yamlfile import parse_yaml

MAX_TRIALS = 10_000  # far more than one machine trains in a day; a typo'd grid must not hang while expanding
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform")


class Distribution(Schema):
    """One of `{uniform: [low, high]}`, `{log_uniform: [low, high]}`, `{int_uniform: [low, high]}` (random only)."""

    uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    log_uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    int_uniform: list[int] | None = Field(None, min_length=2, max_length=2)

    @model_validator(mode="after")
    def _one_range(self) -> Distribution:
        given = [name for name in DISTRIBUTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"expected one of {', '.join(DISTRIBUTIONS)} with [low, high], got {' and '.join(given)}")
        low, high = self.bounds
        if not low < high:
            raise ValueError(f"{self.name}: expected [low, high] with low < high, got [{low}, {high}]")
        if self.name == "log_uniform" and low <= 0:
            raise ValueError(f"log_uniform: expected low > 0 (a log scale), got {low}")
        return self

    @property
    def name(self) -> str:
        return next(name for name in DISTRIBUTIONS if getattr(self, name) is not None)

    @property
    def bounds(self) -> tuple[Any, Any]:
        low, high = getattr(self, self.name)
        return low, high

    def draw(self, rng: np.random.Generator) -> float | int:
        """One value: uniform on [low, high), uniform in log on [low, high), or an integer in [low, high]."""
        low, high = self.bounds
        if self.name == "int_uniform":
            return int(rng.integers(low, high, endpoint=True))
        if self.name == "log_uniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        return float(rng.uniform(low, high))

    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        return {self.name: list(self.bounds)}


def _values_or_distribution(value: Any) -> Any:
    """A list as it is; a mapping validated as a Distribution here, so its errors read `KEY.loguniform: unknown
    key (did you mean 'log_uniform'?)` rather than one error per member of a union."""
    if isinstance(value, list | Distribution):
        return value
    if isinstance(value, dict):
        try:
            return Distribution.model_validate(value)
        except ValidationError as exc:
            raise ValueError("; ".join(dict.fromkeys(_problem(err, value) for err in exc.errors()))) from None
    raise ValueError(
        f"expected a list of values or a distribution such as {{log_uniform: [1.0e-4, 1.0e-1]}}, got {shorten(value)}"
    )


def _problem(err: Any, value: dict[str, Any]) -> str:
    """A distribution's error; a bad item of [low, high] is reported as the whole range."""
    loc = err["loc"]
    if len(loc) > 1 and loc[0] in DISTRIBUTIONS:
        what = "integers" if loc[0] == "int_uniform" else "numbers"
        return f"{loc[0]}: expected [low, high] of two {what}, got {shorten(value[loc[0]])}"
    return describe(err, Distribution, value)


Values = Annotated[list[Any] | Distribution, BeforeValidator(_values_or_distribution)]
NOT_SWEPT = {
    "seed": "use sweep.seeds to train every point with several seeds",
    "name": "a sweep's trials share its name",
    "output": "the sweep directory holds every trial",
    "sweep": "a sweep cannot sweep itself",
    "data.train": "the data are loaded once for the whole sweep; run one sweep per data file",
    "data.validation": "the data are loaded once for the whole sweep; run one sweep per data file",
}


class SweepConfig(Schema):
    """How to vary a config: the keys and values to try, how to pick points, and how to rank the trials."""

    method: Literal["grid", "random"] = "grid"
    trials: int | None = Field(None, ge=1, description="random only: how many points to draw")
    metric: str | None = Field(None, description="a history.csv column; default validation_loss (or train_loss)")
    goal: Literal["minimize", "maximize"] | None = Field(None, description="default: maximize accuracy, else minimize")
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1, description="default: [seed]")
    parameters: dict[str, Values] = Field(default_factory=dict, description="dotted key → values or distribution")

    def problems(self) -> list[str]:
        """What is wrong between the fields (checked with the rest of the config's cross-field rules)."""
        problems = [*self._parameter_problems(), *self._method_problems()]
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds: lists a seed twice: {self.seeds}")
        return problems

    def _parameter_problems(self) -> Iterator[str]:
        for key, values in self.parameters.items():
            plain = normalized(key)
            reason = next((why for k, why in NOT_SWEPT.items() if plain == k or plain.startswith(k + ".")), None)
            if reason is not None:
                yield f"parameters.{key}: cannot be swept: {reason}"
            elif isinstance(values, list) and not values:
                yield f"parameters.{key}: expected at least one value, got an empty list"
            elif isinstance(values, Distribution) and self.method == "grid":
                yield (
                    f"parameters.{key}: a distribution ({values.name}) needs method: random; "
                    "a grid takes a list of values"
                )

    def _method_problems(self) -> Iterator[str]:
        if self.method == "random" and self.trials is None:
            yield "trials: required with method: random (how many points to draw)"
        if self.method == "grid" and self.trials is not None:
            yield "trials: only used by method: random (a grid tries every combination of its lists)"
        if self.method == "random" and not self.parameters:
            yield "parameters: method random needs at least one parameter to draw"
        n, seeds = self.size(), len(self.seeds or [0])  # no seeds given: the config's seed alone
        if n * seeds > MAX_TRIALS:
            what = f"{self.trials} points" if self.method == "random" else f"a grid of {n:,} points"
            yield f"{what} × {seeds} seed(s) is more than {MAX_TRIALS:,} trials; sweep fewer values"

    def size(self) -> int:
        """How many points: the grid's combinations, or `trials` random draws (each trained once per seed)."""
        if self.method == "random":
            return self.trials or 0
        return math.prod(len(v) if isinstance(v, list) else 1 for v in self.parameters.values())

    def to_yaml(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def normalized(key: str) -> str:
    """`layers[1].units` → `layers.1.units`: the two spellings `--set` accepts are one key."""
    return key.replace("[", ".").replace("]", "").strip(".")


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: a point (dotted key → value) trained with one seed."""

    number: int  # from 1, in trial order
    point: int  # from 0: trials with the same point differ only in their seed
    params: dict[str, Any] = field(hash=False)
    seed: int

    @property
    def name(self) -> str:
        return f"{self.number:04d}"

    def overrides(self) -> list[str]:
        """The `--set` arguments that make the sweep's config this trial's (values as YAML that reads back exact)."""
        return [f"{key}={yaml_text(value)}" for key, value in self.params.items()] + [f"seed={self.seed}"]

    def label(self) -> str:
        return ", ".join(f"{key}={yaml_text(value)}" for key, value in self.params.items()) or "base config"


def yaml_text(value: Any) -> str:
    """`value` as `--set` text that parses back to exactly the same value (floats by their shortest repr)."""
    if isinstance(value, float):
        return repr(value)  # `1e-05`: nnctl reads YAML 1.2 floats
    if isinstance(value, bool | int) or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        try:
            if value and value.strip() == value and parse_yaml(value) == value:
                return value
        except Exception:  # noqa: BLE001 (any YAML problem means: quote it)
            pass
        return yaml.safe_dump(value, default_style='"', width=2**31, allow_unicode=True).strip()
    return yaml.safe_dump(value, default_flow_style=True, width=2**31, allow_unicode=True).strip()


def points(sweep: SweepConfig, seed: int) -> list[dict[str, Any]]:
    """The sweep's points in order: the grid's product (first key slowest), or `trials` random draws."""
    keys = list(sweep.parameters)
    if sweep.method == "grid":
        lists = [v if isinstance(v, list) else [v] for v in sweep.parameters.values()]
        return [dict(zip(keys, combination, strict=True)) for combination in itertools.product(*lists)]
    rng = np.random.default_rng(seed)
    return [{key: _draw(spec, rng) for key, spec in sweep.parameters.items()} for _ in range(sweep.trials or 0)]


def _draw(spec: list[Any] | Distribution, rng: np.random.Generator) -> Any:
    """A distribution's draw, or one of a list's values, each equally likely."""
    if isinstance(spec, Distribution):
        return spec.draw(rng)
    return spec[int(rng.integers(len(spec)))]


def trials(sweep: SweepConfig, seed: int) -> list[Trial]:
    """Every trial in order: each point once per seed, seeds innermost (`seed`: the config's, which also
    seeds the random draws)."""
    seeds = sweep.seeds or [seed]
    out: list[Trial] = []
    for p, point in enumerate(points(sweep, seed)):
        for s in seeds:
            out.append(Trial(len(out) + 1, p, point, s))
    return out
