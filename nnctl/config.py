"""The YAML config (docs/reference.md#config): a typed pydantic schema, validated in two passes.

Pass one checks every field (type, range, unknown keys with a suggestion), each layer's, the
objective's and the optimizer's options by their own schema (tagged unions built from the
registries); pass two the rules between fields (the stack's order, objective vs output layer).
The checks that need the data (widths vs classes) happen when the network is built.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from nnctl.errors import ConfigError
from nnctl.layers import LAYERS
from nnctl.objectives import OBJECTIVES
from nnctl.optimizers import OPTIMIZERS, SGD, OptimizerOptions
from nnctl.schedules import SCHEDULES, schedule_union
from nnctl.schema import SIBLINGS, Schema, describe, merge, shorten
from nnctl.sweepconfig import SweepConfig
from nnctl.yamlfile import TooLarge, describe_yaml_error, parse_yaml, read_yaml

# ----------------------------------------------------------------------------- tagged unions from the registries


class NamedSpec(Schema):
    """One entry of `layers`: written as a bare name (`relu`) or a one-key mapping (`fully_connected: {...}`).

    Each registered layer (and objective) gets a subclass whose `kind` is its name and whose `options`
    is its own schema; pydantic picks the subclass by `kind` (a discriminated union).
    """

    kind: str
    options: Schema

    def to_yaml(self) -> Any:
        options = self.options.model_dump(mode="json", exclude_none=True)
        return {self.kind: options} if options else self.kind


def _from_yaml(value: Any) -> Any:
    """`name` or `{name: {options}}` → `{"kind": name, "options": {options}}`."""
    if isinstance(value, str):
        return {"kind": value, "options": {}}
    if isinstance(value, dict) and len(value) == 1 and set(value) != {"kind"}:
        ((kind, options),) = value.items()
        if isinstance(kind, str) and kind not in ("kind", "options"):
            return {"kind": kind, "options": {} if options is None else options}
    if isinstance(value, dict) and len(value) > 1 and not {"kind", "options"} >= set(value):
        raise ValueError(f"expected a name or a mapping with one key, got keys {sorted(map(str, value))[:10]}")
    if isinstance(value, (dict, NamedSpec)):
        return value
    raise ValueError(f"expected a name or a one-key mapping, got {shorten(value)}")


def _literal(value: str) -> Any:
    """Literal[value] for a value known only at run time."""
    return Literal.__getitem__(value)


def tagged_union(registry: dict[str, Any], base: type[NamedSpec]) -> Any:
    """A discriminated union with one `base` subclass per registry name, its options typed by the class."""
    members = [
        create_model(f"{cls.__name__}_{name}", __base__=base, kind=(_literal(name), ...), options=(cls.Options, ...))
        for name, cls in registry.items()
    ]
    for member in members:
        SIBLINGS[member] = members
    return Annotated[Union[tuple(members)], Field(discriminator="kind"), BeforeValidator(_from_yaml)]  # noqa: UP007


def optimizer_union() -> Any:
    """The optimizers' options, told apart by `name` (sgd when it is left out), each with `schedule` typed by
    the schedules registered now."""
    schedule: Any = (schedule_union() | None, None)
    members = [
        create_model(cls.Options.__name__, __base__=cls.Options, __module__=cls.Options.__module__, schedule=schedule)
        for cls in OPTIMIZERS.values()
    ]
    for member in members:
        SIBLINGS[member] = members

    def default_name(value: Any) -> Any:
        return {"name": "sgd", **value} if isinstance(value, dict) and "name" not in value else value

    return Annotated[Union[tuple(members)], Field(discriminator="name"), BeforeValidator(default_name)]  # noqa: UP007


SchemaT = TypeVar("SchemaT", bound=Schema)


def registered(base: type[SchemaT]) -> type[SchemaT]:
    """`base` with its `layers`, `objective` and `optimizer` fields typed by the registries as they are now:
    a layer, objective, optimizer or schedule registered at any time is validated by its own options schema."""
    registries = (LAYERS, OBJECTIVES, OPTIMIZERS, SCHEDULES)
    key = tuple((name, cls) for registry in registries for name, cls in registry.items())
    return _registered(base, key)


@functools.lru_cache(maxsize=16)
def _registered(base: type[SchemaT], key: tuple[Any, ...]) -> type[SchemaT]:
    fields: dict[str, Any] = {}
    if "layers" in base.model_fields:
        fields["layers"] = (list[tagged_union(LAYERS, NamedSpec)], Field(min_length=1))  # type: ignore[misc]
    if "objective" in base.model_fields:
        fields["objective"] = (tagged_union(OBJECTIVES, NamedSpec), ...)
    if "optimizer" in base.model_fields:
        fields["optimizer"] = (optimizer_union(), Field(default_factory=dict, validate_default=True))  # sgd
    return create_model(base.__name__, __base__=base, __module__=base.__module__, **fields)


# ----------------------------------------------------------------------------- sections


class DataConfig(Schema):
    train: Path = Field(strict=False, description="training data: .csv, .csv.gz or .parquet (relative to the config)")
    validation: Path | None = Field(None, strict=False, description="validation data, in any of those formats")
    validation_split: float | None = Field(None, gt=0, lt=1, description="fraction of train held out")
    target: str | list[str] = Field(description="target column, or list of columns")
    features: list[str] | None = Field(None, min_length=1, description="feature columns; default all others")
    cache: bool = Field(
        True, description="keep a binary copy of each parsed file in .nnctl-cache/ (or $NNCTL_CACHE_DIR)"
    )
    # Real tabular data (docs/reference.md#tabular-data): checked against each other by `check_tabular`.
    categorical: list[str] = Field(default_factory=list, description="feature columns to one-hot encode")
    missing: Literal["error", "mean", "median", "most_frequent", "constant"] = Field(
        "error", description="how missing feature values are filled, from the training rows"
    )
    fill_value: float | None = Field(None, strict=False, description="the value `missing: constant` fills in")
    scale_target: bool = Field(False, description="regression: train on standardised targets")
    class_weight: Literal["balanced"] | dict[str | int, float] | None = Field(
        None, description="classification: balanced, or {label: weight}; each training row's loss is weighted"
    )
    test: Path | None = Field(None, strict=False, description="scored once after training (test_metrics.json)")

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

    @field_validator("class_weight", mode="before")
    @classmethod
    def _label_keys(cls, value: Any) -> Any:
        """YAML reads `yes`, `no`, `on`, `off`, `true`, `false` as booleans: such a label must be quoted."""
        if isinstance(value, dict):
            flag = next((k for k in value if isinstance(k, bool)), None)
            if flag is not None:
                raise ValueError(
                    f"label {flag} is a YAML boolean; quote labels such as yes/no/true/false: {{'yes': 2.0}}"
                )
        return value

    @model_validator(mode="after")
    def _tabular(self) -> DataConfig:
        if len(set(self.categorical)) != len(self.categorical):
            raise ValueError(f"categorical: lists a column twice: {self.categorical}")
        targets = sorted(set(self.targets) & set(self.categorical))
        if targets:
            raise ValueError(f"categorical: column(s) {targets} are targets; categorical names feature columns")
        if self.features is not None:
            outside = [c for c in self.categorical if c not in self.features]
            if outside:
                raise ValueError(f"categorical: column(s) {outside} are not in data.features; add them there too")
        if (self.missing == "constant") != (self.fill_value is not None):
            if self.fill_value is None:
                raise ValueError("fill_value: missing: constant needs a fill_value (a number), e.g. fill_value: 0")
            raise ValueError(f"fill_value: only used with missing: constant (missing is {self.missing!r})")
        if isinstance(self.class_weight, dict):
            bad = {str(k): w for k, w in self.class_weight.items() if not (w >= 0 and w != float("inf"))}
            if bad or not any(self.class_weight.values()):
                raise ValueError(
                    f"class_weight: expected a weight ≥ 0 for each label (not all 0), got {self.class_weight}"
                )
        return self


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
    """A whole config. Validate with `validate_config` (or `registered(Config)`), which types the layers,
    objective and optimizer by the registries."""

    name: str | None = Field(None, description="the run's name: a plain name, never a path")
    seed: int = Field(0, ge=0)
    dtype: Literal["float64", "float32"] = "float64"
    epsilon: float = Field(1e-7, gt=0)
    data: DataConfig
    layers: list[NamedSpec] = Field(min_length=1)  # each typed by its layer's schema: see `registered`
    objective: NamedSpec
    optimizer: OptimizerOptions = Field(default_factory=SGD.Options)
    training: TrainingConfig = TrainingConfig()
    output: str = "runs"
    sweep: SweepConfig | None = None  # what `nnctl sweep` varies; `nnctl train` trains the config as it is
    _source: str = PrivateAttr("config")  # the file it came from, for messages

    @property
    def source(self) -> str:
        return self._source

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str | None) -> str | None:
        """A run directory's name under `output`: no separators, no `..`, nothing a file system refuses."""
        if name is None:
            return None
        if name in ("", ".", "..") or len(name) > 100 or any(c in name for c in "/\\") or not name.isprintable():
            raise ValueError(
                f"expected a plain name of at most 100 printable characters without / or \\, got {shorten(name)}; "
                "use `output` or --out to choose the directory"
            )
        return name

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain YAML-able data (paths as strings, layers and objective as written)."""
        out = self.model_dump(mode="json")
        out["layers"] = [layer.to_yaml() for layer in self.layers]
        out["objective"] = self.objective.to_yaml()
        out["optimizer"] = {"name": self.optimizer.name} | out["optimizer"]
        out.pop("sweep")
        if self.sweep is not None:
            out["sweep"] = self.sweep.to_yaml()
        return out


# ----------------------------------------------------------------------------- loading


def apply_overrides(raw: dict[str, Any], overrides: list[str], where: str) -> set[str]:
    """Apply `--set a.b=value` overrides (values parsed as YAML scalars); returns the dotted keys set. `where` (the
    config file, or what stands for it) begins every message."""
    touched = set()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where}: --set {item!r}: expected KEY=VALUE, e.g. --set training.epochs=5")
        try:
            value = parse_yaml(text)
        except TooLarge as exc:
            raise ConfigError(f"{where}: --set {shorten(item)}: {describe_yaml_error(exc)}") from None
        except yaml.YAMLError:
            value = text
        touched.add(set_key(raw, key, value, f"{where}: --set {item!r}"))
    return touched


def set_key(raw: dict[str, Any], key: str, value: Any, where: str) -> str:
    """Set one dotted key of a config as written to `value`, as `--set` does; returns the key, dotted. `where`
    begins every message.

    `layers.1.fully_connected.units` and `layers[1].fully_connected.units` (as messages print it) are the same key.
    """
    key = re.sub(r"\[(-?\d+)\]", r".\1", key.strip())
    parts = key.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _list_item(node, part, ".".join(parts[: i + 1]), where)
            option = parts[i + 1]
            if parts[:i] == ["layers"] and isinstance(node, dict) and len(node) == 1 and option not in node:
                (kind,) = node
                raise ConfigError(
                    f"{where}: layers[{part}] is a {kind!r} layer; its options are set with "
                    f"layers.{part}.{kind}.{option}=VALUE (or replace the layer with layers.{part}=NAME)"
                )
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: {'.'.join(parts[:i])} is not a mapping")
        if node.get(part) is None:
            node[part] = {}
        elif isinstance(node[part], str):  # a bare name whose options are being set
            node[part] = _bare_name_mapping(parts[: i + 1], node[part], parts[i + 1], where)
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        index = _list_index(node, last, key, where)
        node[index] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{where}: {'.'.join(parts[:-1])} is not a mapping")
    return key


def _bare_name_mapping(key: list[str], name: str, option: str, where: str) -> dict[str, Any]:
    """The mapping a bare `objective: huber` or `optimizer.schedule: plateau` stands for, so --set can
    reach its options (`objective.huber.delta=2`, `optimizer.schedule.patience=3`)."""
    if key == ["objective"]:
        if option != name:
            raise ConfigError(
                f"{where}: the objective is {name!r}; its options are set with objective.{name}.{option}=VALUE "
                "(or replace it with objective=NAME)"
            )
        return {name: {}}
    if key == ["optimizer", "schedule"]:
        return {"name": name}
    raise ConfigError(f"{where}: {'.'.join(key)} is not a mapping")


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
    raw, touched = read_config(path, overrides)
    return resolve_config(raw, path, touched)


def read_config(path: str | Path, overrides: list[str] | None = None) -> tuple[dict[str, Any], set[str]]:
    """A config file as written with the overrides applied, not validated, and the dotted keys they set."""
    path = Path(path)
    raw = read_yaml(path)
    return raw, apply_overrides(raw, list(overrides or []), str(path))


def resolve_config(raw: dict[str, Any], path: str | Path, touched: Collection[str] = frozenset()) -> Config:
    """The validated config of `raw`, read from the file at `path` (`read_config`): data paths absolute, relative
    to the file; the file's name when it names no run. `raw` itself is left as it is."""
    path = Path(path)
    config = validate_config(raw, path, touched)
    absolute_data_paths(config, path.resolve().parent, path)
    if config.name is None:
        config.name = path.stem
    config._source = str(path)
    return config


DATA_FILES = ("train", "validation", "test")  # the `data` keys that name files


def absolute_data_paths(config: Config | dict[str, Any], base: Path, where: str | Path = "config") -> None:
    """The data files of a config, or of a config document as written (its `data` strings), made absolute in place:
    a relative path is relative to `base` (the folder of the file it was read from). `where` begins a message."""
    data = config.data if isinstance(config, Config) else config.get("data")
    for key in DATA_FILES:
        value = data.get(key) if isinstance(data, dict) else getattr(data, key, None)
        if not isinstance(value, str | Path):
            continue
        try:
            path = (base / value).resolve()
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long
            raise ConfigError(f"{where}: data.{key}: expected a file path, got {str(value)!r} ({exc})") from None
        if isinstance(data, dict):
            data[key] = str(path)
        else:
            setattr(data, key, path)


def relative_data_paths(document: dict[str, Any], home: Path) -> None:
    """A config document's data files named relative to the directory `home` it is written into (so the two can
    move together), in place; `absolute_data_paths` reads them back."""
    data = document.get("data")
    if not isinstance(data, dict):
        return
    for key in DATA_FILES:
        if isinstance(data.get(key), str | Path):
            data[key] = _relative(Path(data[key]), home)


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return str(path)


def validate_config(raw: dict[str, Any], path: Path | str = "config", touched: Collection[str] = frozenset()) -> Config:
    """Both passes over already-parsed YAML; every problem found is listed in one ConfigError."""
    schema = registered(Config)
    try:
        config = schema.model_validate(raw)
    except ValidationError as exc:
        problems = merge([describe(err, schema, raw, frozenset(touched)) for err in exc.errors()])
        raise ConfigError(_join(path, problems)) from None
    problems = [problem for check in CROSS_FIELD_CHECKS for problem in check(config)]
    if problems:
        raise ConfigError(_join(path, problems))
    return config


def _join(path: Path | str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{path}: {problems[0]}"
    return f"{path}: {len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)


def check_input_first(config: Config) -> list[str]:
    return [
        f"layers[{i}]: input must be the first layer"
        for i, layer in enumerate(config.layers)
        if layer.kind == "input" and i
    ]


def check_objective(config: Config) -> list[str]:
    """The output layer produces what the objective scores, and the targets fit it."""
    objective, last = config.objective.kind, config.layers[-1].kind
    cls = OBJECTIVES[objective]
    if cls.output_layers and last not in cls.output_layers:
        what = "class probabilities that sum to 1" if cls.targets == "classes" else "probabilities in (0, 1)"
        softmax_binary = cls.targets == "binary" and last == "softmax"
        why = ", and softmax over one column always outputs 1" if softmax_binary else ""
        extra = " (or use cross_entropy for one column of several classes)" if softmax_binary else ""
        return [
            f"objective: {objective} needs {what} from the last layer, but layers[{len(config.layers) - 1}] "
            f"is {last!r}{why}; end the stack with {' or '.join(cls.output_layers)}{extra}"
        ]
    targets = config.data.targets
    if cls.targets == "classes" and len(targets) > 1:
        return [
            f"data.target: {objective} takes one column of class labels, got {len(targets)} columns {targets}; "
            "for several 0/1 columns use log_loss with a logistic output"
        ]
    return []


def check_tabular(config: Config) -> list[str]:
    """scale_target needs a regression objective, class_weight one column of class labels."""
    data, objective = config.data, config.objective.kind
    targets = OBJECTIVES[objective].targets
    problems = []
    if data.scale_target and targets != "values":
        problems.append(
            f"data.scale_target: standardises regression targets; {objective} scores classes "
            "(use it with squared_error, absolute_error or huber)"
        )
    if data.class_weight is not None and (targets == "values" or len(data.targets) > 1):
        what = "regression" if targets == "values" else f"{len(data.targets)} independent 0/1 columns"
        problems.append(
            f"data.class_weight: weights the classes of one target column (cross_entropy, or log_loss on one column); "
            f"this config's {objective} does {what}"
        )
    return problems


def check_training(config: Config) -> list[str]:
    if (
        config.training.early_stopping is not None
        and config.data.validation is None
        and not config.data.validation_split
    ):
        return ["training.early_stopping: needs validation data; set data.validation or data.validation_split"]
    return []


def check_sweep(config: Config) -> list[str]:
    return [f"sweep.{problem}" for problem in config.sweep.problems()] if config.sweep is not None else []


CROSS_FIELD_CHECKS = (check_input_first, check_objective, check_tabular, check_training, check_sweep)
