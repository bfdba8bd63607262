"""The YAML config (SPEC §3): a typed pydantic schema, validated in two passes.

Pass one checks every field (type, range, unknown keys with a suggestion); pass two the
rules between fields (layer options, the stack's order, objective vs output layer).
The checks that need the data (widths vs classes) happen when the network is built.
"""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from nnctl.errors import ConfigError
from nnctl.layers import LAYERS
from nnctl.objectives import OBJECTIVES


class Schema(BaseModel):
    # strict: `units: true` or `epochs: "10"` is a type error, not 1 or 10; numbers must be finite
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------- layer options


class InputOptions(Schema):
    normalize: Literal["zscore", "none"] = Field("zscore", description="z-score with training statistics, or none")


class FullyConnectedOptions(Schema):
    units: int = Field(ge=1, description="output width K")
    init: Literal["xavier", "he", "normal", "uniform"] = Field("xavier", description="weight initialisation")
    scale: float | None = Field(None, gt=0, description="std of `normal`, half-width of `uniform`")


class NoOptions(Schema):
    pass


LAYER_OPTIONS: dict[str, type[Schema]] = {"input": InputOptions, "fully_connected": FullyConnectedOptions}


class LayerSpec(Schema):
    """One entry of `layers`: a bare name (`relu`) or a one-key mapping (`fully_connected: {...}`)."""

    kind: str
    options: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"kind": value, "options": {}}
        if isinstance(value, dict) and set(value) != {"kind", "options"}:
            if len(value) != 1:
                raise ValueError(f"a layer is a name or a mapping with one key, got keys {sorted(map(str, value))}")
            ((kind, options),) = value.items()
            if options is None:
                options = {}
            if not isinstance(options, dict):
                raise ValueError(f"options of {kind!r} must be a mapping, got {options!r}")
            return {"kind": kind, "options": options}
        if isinstance(value, dict):
            return value
        raise ValueError(f"a layer is a name or a one-key mapping, got {value!r}")

    def to_yaml(self) -> Any:
        return {self.kind: self.options} if self.options else self.kind


# ----------------------------------------------------------------------------- sections


class DataConfig(Schema):
    train: Path = Field(strict=False, description="training CSV (relative to the config file)")
    validation: Path | None = Field(None, strict=False, description="validation CSV")
    validation_split: float | None = Field(None, gt=0, lt=1, description="fraction of train held out")
    target: str | list[str] = Field(description="target column, or list of columns")
    features: list[str] | None = Field(None, min_length=1, description="feature columns; default all others")

    @model_validator(mode="after")
    def _one_validation_source(self) -> DataConfig:
        if self.validation is not None and self.validation_split is not None:
            raise ValueError("give either validation or validation_split, not both")
        targets = [self.target] if isinstance(self.target, str) else self.target
        if not targets:
            raise ValueError("target: expected a column name or a non-empty list of column names")
        if len(set(targets)) != len(targets):
            raise ValueError(f"target lists a column twice: {targets}")
        if self.features is not None:
            if len(set(self.features)) != len(self.features):
                raise ValueError(f"features lists a column twice: {self.features}")
            both = sorted(set(targets) & set(self.features))
            if both:
                raise ValueError(f"column(s) {both} are both a target and a feature")
        return self

    @property
    def targets(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)


class OptimizerConfig(Schema):
    name: Literal["sgd", "momentum", "adam"] = "sgd"
    learning_rate: float = Field(0.01, gt=0, description="η")
    momentum: float = Field(0.9, ge=0, lt=1, description="μ of `momentum`")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    delta: float = Field(1e-8, gt=0, description="Adam's δ")
    weight_decay: float = Field(0.0, ge=0, description="L2 λ: g ← g + λp")

    def own_keys(self) -> set[str]:
        """The keys this optimiser uses; the others' settings are neither accepted nor saved."""
        return {"name", "learning_rate", "weight_decay", *OPTIMIZER_SETTINGS[self.name]}


OPTIMIZER_SETTINGS = {"sgd": (), "momentum": ("momentum",), "adam": ("beta1", "beta2", "delta")}


class EarlyStoppingConfig(Schema):
    patience: int = Field(10, ge=1, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0, description="smallest decrease of validation loss that counts")


class TrainingConfig(Schema):
    epochs: int = Field(100, ge=1)
    batch_size: int | None = Field(32, ge=1, description="null: full batch")
    shuffle: bool = True
    early_stopping: EarlyStoppingConfig | None = None
    tolerance: float | None = Field(None, ge=0, description="stop when |Δ train loss| < tolerance")


class Config(Schema):
    name: str | None = None
    seed: int = Field(0, ge=0)
    dtype: Literal["float64", "float32"] = "float64"
    epsilon: float = Field(1e-7, gt=0)
    data: DataConfig
    layers: list[LayerSpec] = Field(min_length=1)
    objective: str
    optimizer: OptimizerConfig = OptimizerConfig()
    training: TrainingConfig = TrainingConfig()
    output: str = "runs"
    _source: str = PrivateAttr("config")  # the file it came from, for messages

    @property
    def source(self) -> str:
        return self._source

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-able data (paths as strings, layers as written)."""
        out = self.model_dump(mode="json")
        out["layers"] = [layer.to_yaml() for layer in self.layers]
        own = self.optimizer.own_keys()
        out["optimizer"] = {k: v for k, v in out["optimizer"].items() if k in own}
        return out

    @property
    def is_classification(self) -> bool:
        return self.objective in ("cross_entropy", "log_loss")


# ----------------------------------------------------------------------------- loading


def init_rng(seed: int) -> np.random.Generator:
    """The weight-initialisation stream of a seed (shuffling and splitting have their own)."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])


def rngs(seed: int) -> dict[str, np.random.Generator]:
    """Independent streams for init, split and shuffle, so changing one never moves the others."""
    init, split, shuffle = np.random.SeedSequence(seed).spawn(3)
    return {
        "init": np.random.default_rng(init),
        "split": np.random.default_rng(split),
        "shuffle": np.random.default_rng(shuffle),
    }


class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads YAML 1.2 floats without a dot (`1e-3`), which YAML 1.1 leaves as strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """yaml.safe_load, plus YAML 1.2 floats such as `1e-3`."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a config file safely; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); expected a YAML config file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the config: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        raw = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise ConfigError(f"{path}: expected a mapping of config keys (name, data, layers, ...), got {kind}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str], path: Path) -> set[str]:
    """Apply `a.b=value` overrides (values parsed as YAML scalars); returns the dotted keys set.

    `layers.1.fully_connected.units=4` and `layers[1].fully_connected.units=4` (as messages print it) are the same key.
    """
    touched = set()
    for item in overrides:
        key, sep, text = item.partition("=")
        key = re.sub(r"\[(-?\d+)\]", r".\1", key.strip())
        if not sep or not key:
            raise ConfigError(f"{path}: --set {item!r}: expected KEY=VALUE, e.g. --set training.epochs=5")
        try:
            value = parse_yaml(text)
        except yaml.YAMLError:
            value = text
        parts = key.split(".")
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                node = _list_item(node, part, ".".join(parts[: i + 1]), f"{path}: --set {item!r}")
                option = parts[i + 1]
                if parts[:i] == ["layers"] and isinstance(node, dict) and len(node) == 1 and option not in node:
                    (kind,) = node
                    raise ConfigError(
                        f"{path}: --set {item!r}: layers[{part}] is a {kind!r} layer; its options are set with "
                        f"layers.{part}.{kind}.{option}=VALUE (or replace the layer with layers.{part}=NAME)"
                    )
                continue
            if not isinstance(node, dict):
                raise ConfigError(f"{path}: --set {item!r}: {'.'.join(parts[:i])} is not a mapping")
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        last = parts[-1]
        if isinstance(node, list):
            index = _list_index(node, last, key, f"{path}: --set {item!r}")
            node[index] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"{path}: --set {item!r}: {'.'.join(parts[:-1])} is not a mapping")
        touched.add(key)
    return touched


def _list_index(node: list, part: str, key: str, where: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(f"{where}: {key}: expected an index from 0 to {len(node) - 1}")
    return int(part)


def _list_item(node: list, part: str, key: str, where: str) -> Any:
    index = _list_index(node, part, key, where)
    value = node[index]
    if isinstance(value, str):  # a bare layer name becomes a mapping so options can be set
        value = node[index] = {value: {}}
    elif isinstance(value, dict) and len(value) == 1:
        ((kind, options),) = value.items()
        if options is None:
            value[kind] = {}
    return value


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a config file; data paths become absolute, relative to the file."""
    path = Path(path)
    raw = read_yaml(path)
    touched = apply_overrides(raw, list(overrides or []), path)
    config = validate_config(raw, path, touched)
    base = path.resolve().parent
    data = config.data
    for key in ("train", "validation"):
        value = getattr(data, key)
        if value is not None:
            try:
                setattr(data, key, (base / value).resolve())
            except (OSError, ValueError) as exc:  # a NUL byte, a name too long
                raise ConfigError(f"{path}: data.{key}: expected a file path, got {str(value)!r} ({exc})") from None
    if config.name is None:
        config.name = path.stem
    config._source = str(path)
    return config


def validate_config(raw: dict[str, Any], path: Path | str = "config", touched: set[str] = frozenset()) -> Config:
    """Both passes over already-parsed YAML; every problem found is listed in one ConfigError."""
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems = _merge([_describe(err, touched, raw=raw) for err in exc.errors()])
        raise ConfigError(_join(path, problems)) from None
    problems = (
        check_layers(config, touched) + check_objective(config) + check_optimizer(config) + check_training(config)
    )
    if problems:
        raise ConfigError(_join(path, problems))
    return config


def _join(path: Path | str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{path}: {problems[0]}"
    return f"{path}: {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


def check_layers(config: Config, touched: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Second pass: every layer is known, its options fit its schema, and `input` comes first."""
    problems = []
    for i, layer in enumerate(config.layers):
        where = f"layers[{i}]"
        if layer.kind not in LAYERS:
            hint = _suggest(layer.kind, LAYERS)
            problems.append(f"{where}: unknown layer {layer.kind!r}{hint}; expected one of: {', '.join(LAYERS)}")
            continue
        if layer.kind == "input" and i != 0:
            problems.append(f"{where}: input must be the first layer")
        schema = LAYER_OPTIONS.get(layer.kind, NoOptions)
        try:
            layer.options = schema.model_validate(layer.options).model_dump(exclude_none=True)
        except ValidationError as exc:
            for err in exc.errors():
                problems.append(
                    _describe(err, touched, prefix=(f"layers[{i}]", str(layer.kind)), model=schema, raw=layer.options)
                )
    return problems


def check_objective(config: Config) -> list[str]:
    """Second pass: the objective exists and the output layer produces what it needs."""
    if config.objective not in OBJECTIVES:
        hint = _suggest(config.objective, OBJECTIVES)
        return [f"objective: unknown objective {config.objective!r}{hint}; expected one of: {', '.join(OBJECTIVES)}"]
    last = config.layers[-1].kind
    needs = {"cross_entropy": ("softmax",), "log_loss": ("logistic", "sigmoid")}.get(config.objective)
    if needs and last not in needs:
        what = "class probabilities that sum to 1" if config.objective == "cross_entropy" else "probabilities in (0, 1)"
        fix = "softmax" if config.objective == "cross_entropy" else "logistic or sigmoid"
        softmax_log_loss = config.objective == "log_loss" and last == "softmax"
        why = ", and softmax over one column always outputs 1" if softmax_log_loss else ""
        extra = " (or use cross_entropy for one column of several classes)" if softmax_log_loss else ""
        return [
            f"objective: {config.objective} needs {what} from the last layer, but layers[{len(config.layers) - 1}] "
            f"is {last!r}{why}; end the stack with {fix}{extra}"
        ]
    targets = config.data.targets
    if config.objective == "cross_entropy" and len(targets) > 1:
        return [
            f"data.target: cross_entropy takes one column of class labels, got {len(targets)} columns {targets}; "
            "for several 0/1 columns use log_loss with a logistic output"
        ]
    return []


def check_optimizer(config: Config) -> list[str]:
    """Settings of another optimiser are mistakes (beta1 with momentum does nothing): say so."""
    opt = config.optimizer
    foreign = sorted(opt.model_fields_set - opt.own_keys())
    users = {key: name for name, keys in OPTIMIZER_SETTINGS.items() for key in keys}
    return [f"optimizer.{key}: only used by {users[key]}, but optimizer.name is {opt.name!r}" for key in foreign]


def check_training(config: Config) -> list[str]:
    if (
        config.training.early_stopping is not None
        and config.data.validation is None
        and not config.data.validation_split
    ):
        return ["training.early_stopping: needs validation data; set data.validation or data.validation_split"]
    return []


# ----------------------------------------------------------------------------- messages


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema class that validates the mapping at `loc` (for suggesting keys)."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        for arg in list(candidates):
            candidates += list(typing.get_args(arg))
        sub = next((a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is None:
            return None
        model = sub
    return model


def _suggest(word: str, choices: Any) -> str:
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


_UNION_TAGS = ("int", "str", "float", "bool", "none")


def _user_loc(loc: tuple[Any, ...], raw: Any) -> tuple[Any, ...]:
    """`loc` without the member tags unions add (e.g. "str", "list[str]"): walk the user's document
    and keep every part that is one of its keys or indices, so a user's own key `str` stays."""
    out, node = [], raw
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node)):
            node = node[part]
        elif isinstance(part, str) and ("[" in part or part in _UNION_TAGS):
            continue
        else:
            node = None
        out.append(part)
    return tuple(out)


def _describe(
    err: dict[str, Any],
    touched: set[str] | frozenset[str],
    prefix: tuple[str, ...] = (),
    model: type[BaseModel] = Config,
    raw: Any = None,
) -> str:
    """One pydantic error as `dotted.key: what was expected, got what`."""
    loc = _user_loc(tuple(err["loc"]), raw)
    key = ".".join(filter(None, [*prefix, _dotted(loc)]))
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    dotted = re.sub(r"\[(-?\d+)\]", r".\1", key)  # as --set writes it; an override at, above or below it counts
    set_here = any(f"{dotted}.".startswith(f"{t}.") or f"{t}.".startswith(f"{dotted}.") for t in touched)
    source = " (from --set)" if set_here else ""
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        hint = _suggest(loc[-1], parent.model_fields) if parent and loc else ""
        valid = f"; valid keys: {', '.join(parent.model_fields)}" if parent else ""
        if parent is not None and not parent.model_fields:
            valid = f"; {prefix[-1] if prefix else 'this'} takes no options"
        return f"{key}: unknown key{source}{hint or valid}"
    if kind == "invalid_key":
        return f"{_dotted(loc[:-1]) or 'config'}: keys must be names (strings), got {value!r}"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
        field, sep, rest = message.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+", field):  # "target: ..." raised by the section's own check
            return f"{key}.{field}: {rest}" if key else message
        return f"{key}: {message}" if key else message
    bound = {k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()}
    expected = {
        "greater_than": "a positive number" if ctx.get("gt") == 0 else f"a number > {bound.get('gt')}",
        "greater_than_equal": f"a number ≥ {bound.get('ge')}",
        "less_than": f"a number < {bound.get('lt')}",
        "less_than_equal": f"a number ≤ {bound.get('le')}",
        "finite_number": "a finite number",
        "int_type": "an integer",
        "int_parsing": "an integer",
        "int_from_float": "a whole number",
        "float_type": "a number",
        "float_parsing": "a number",
        "bool_type": "true or false",
        "bool_parsing": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "literal_error": f"one of {ctx.get('expected')}",
        "too_short": f"at least {ctx.get('min_length')} item(s)",
        "path_type": "a file path",
    }.get(kind, err["msg"].lower())
    if kind == "greater_than_equal" and ctx.get("ge") in (0, 1) and isinstance(value, int):
        expected = "a positive integer" if ctx.get("ge") == 1 else "a non-negative integer"
    return f"{key}: expected {expected}, got {value!r}{source}"


def _merge(problems: list[str]) -> list[str]:
    """Union fields report once per member type; fold `k: expected A, got v` + `k: expected B, got v`."""
    merged: dict[str, str] = {}
    for problem in problems:
        key, _, rest = problem.partition(": ")
        if key in merged and rest.startswith("expected ") and merged[key].startswith("expected "):
            first, _, got = merged[key].partition(", got ")
            merged[key] = f"{first} or {rest[len('expected ') :].partition(', got ')[0]}, got {got}"
        elif key not in merged:
            merged[key] = rest
    return [f"{k}: {v}" for k, v in merged.items()]


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
