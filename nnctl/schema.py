"""The base of every options schema, and pydantic's errors turned into one line per problem.

A layer, objective or optimizer declares its options as a `Schema` subclass; the config
(nnctl.config) assembles them into tagged unions. `describe` turns a pydantic error into
`dotted.key: expected X, got Y`, with did-you-mean suggestions for unknown keys and names.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from nnctl.errors import ConfigError

T = TypeVar("T")


class Schema(BaseModel):
    """Strict options: `units: true` or `epochs: "10"` is a type error, not 1 or 10; numbers must be finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


# What users of other libraries write for nnctl's names (Keras, PyTorch, scikit-learn).
SYNONYMS = {
    "mse": "squared_error",
    "mean_squared_error": "squared_error",
    "l2": "squared_error",
    "mae": "absolute_error",
    "mean_absolute_error": "absolute_error",
    "l1": "absolute_error",
    "smooth_l1": "huber",
    "bce": "log_loss",
    "binary_crossentropy": "log_loss",
    "binary_cross_entropy": "log_loss",
    "categorical_crossentropy": "cross_entropy",
    "crossentropy": "cross_entropy",
    "nll": "cross_entropy",
    "dense": "fully_connected",
    "linear_layer": "fully_connected",
    "fc": "fully_connected",
    "sigmoid": "logistic",
    "glorot": "xavier",
    "glorot_uniform": "xavier",
    "kaiming": "he",
    "he_normal": "he",
    "float": "float64",
    "double": "float64",
    "float16": "float32",
}


class Configured:
    """A class set up by its `Options` schema (a layer, objective, schedule), whose options live on it as
    attributes of the same names: `config()` reads them back (what rebuilds it; saved in model.json)."""

    Options: ClassVar[type[Schema]]

    def config(self) -> dict[str, Any]:
        values = {key: getattr(self, key) for key in self.Options.model_fields if key != "name"}
        return {key: value for key, value in values.items() if value is not None}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({options})"


def suggest(word: Any, choices: Any) -> str:
    """` (did you mean 'x'?)` for the choice meant: the same name in other case, a synonym from another
    library, or the closest spelling."""
    options = [str(c) for c in choices]
    text = str(word)
    folded = {option.lower(): option for option in options}
    key = text.lower().replace("-", "_").replace(" ", "_")
    match = folded.get(key) or (SYNONYMS.get(key) if SYNONYMS.get(key) in options else None)
    if match is None:
        close = difflib.get_close_matches(text, options, n=1, cutoff=0.75)
        match = close[0] if close else None
    return f" (did you mean {match!r}?)" if match else ""


def shorten(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters so a huge value never floods a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shorten_list(items: Any, what: str = "items", limit: int = 8) -> str:
    """`3 classes: 'a', 'b', 'c'`, or `2,000 classes: 'a', 'b', …` — a list never floods a message."""
    items = list(items)
    shown = ", ".join(shorten(item, 40) for item in items[:limit])
    return f"{len(items):,} {what}: {shown}{', …' if len(items) > limit else ''}"


def lookup(registry: dict[str, T], name: str, what: str) -> T:
    """A registry entry by its config name; the error suggests the closest and lists every valid name."""
    try:
        return registry[name]
    except KeyError:
        raise ConfigError(
            f"unknown {what} {shorten(name)}{suggest(name, registry)}; expected one of: {', '.join(registry)}"
        ) from None


def validate_options(schema: type[Schema], options: Any, where: str) -> Schema:
    """Validate one options mapping outside a config (the Python API); errors name `where`."""
    try:
        return schema.model_validate({} if options is None else options)
    except ValidationError as exc:
        problems = [describe(err, schema, options) for err in exc.errors()]
        raise ConfigError(
            "; ".join(f"{where}.{p}" if not p.startswith(":") else f"{where}{p}" for p in problems)
        ) from None


# ----------------------------------------------------------------------------- following an error's location


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a union (Optional, `A | B`, Annotated[Union[...], ...]); [annotation] otherwise."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def tag_of(model: Any) -> tuple[str, list[str]] | None:
    """(discriminator field, its values) of a tagged-union member: a field typed `Literal[...]` named kind or name."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    for key in ("kind", "name"):
        field = model.model_fields.get(key)
        if field is not None and typing.get_origin(field.annotation) is Literal:
            return key, [str(v) for v in typing.get_args(field.annotation)]
    return None


def _step(annotation: Any, part: Any) -> tuple[Any, bool]:
    """Follow one loc part from a type: (the type reached, whether the user wrote this part)."""
    members = _members(annotation)
    if isinstance(part, int):
        for member in members:
            if typing.get_origin(member) is list:
                return typing.get_args(member)[0], True
        return None, True
    for member in members:  # a tagged union's member, named by its tag: not part of the user's key
        tag = tag_of(member)
        if tag is not None and len(members) > 1 and part in tag[1]:
            return member, tag[0] == "kind"  # a layer's name is the user's key; an optimizer's is a value
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(part)
            if field is not None:
                return field.annotation, True
    if len(members) > 1 and isinstance(part, str) and ("[" in part or part in ("int", "str", "float", "bool", "none")):
        return annotation, False  # a plain union's member tag (e.g. "list[str]")
    return None, True


def resolve(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], Any]:
    """The user's own key path in a pydantic `loc` (union tags and option wrappers dropped), and the type
    that validates the mapping holding its last part (for listing and suggesting valid keys)."""
    path: list[Any] = []
    current: Any = model
    parent: Any = model
    for part in loc:
        parent = current
        current, written = _step(current, part) if current is not None else (None, True)
        if written and not (part == "options" and _is_layer_wrapper(parent)):
            path.append(part)
    return tuple(path), parent


def _is_layer_wrapper(model: Any) -> bool:
    """A layer spec {kind, options}: the user writes `name: {options}`, so `options` is not their key."""
    tag = tag_of(model)
    return tag is not None and tag[0] == "kind" and "options" in model.model_fields


def dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


# ----------------------------------------------------------------------------- one error, one line

_EXPECTED = {
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
    "path_type": "a file path",
}


def _expected(kind: str, ctx: dict[str, Any], value: Any, msg: str, number: bool = False) -> str:
    """What was expected, in words; `number`: the field takes any number, so an integer bound is not
    "a positive integer"."""
    bound = {k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()}
    if kind == "greater_than_equal" and ctx.get("ge") in (0, 1) and isinstance(value, int) and not number:
        return "a positive integer" if ctx.get("ge") == 1 else "a non-negative integer"
    special = {
        "greater_than": "a positive number" if ctx.get("gt") == 0 else f"a number > {bound.get('gt')}",
        "greater_than_equal": f"a number ≥ {bound.get('ge')}",
        "less_than": f"a number < {bound.get('lt')}",
        "less_than_equal": f"a number ≤ {bound.get('le')}",
        "literal_error": f"one of {ctx.get('expected')}",
        "too_short": f"at least {ctx.get('min_length')} item(s)",
    }
    return special.get(kind) or _EXPECTED.get(kind) or msg.lower()


def _unknown_key(key: str, loc: tuple[Any, ...], parent: Any, source: str) -> str:
    """`key: unknown key`, with a suggestion, the valid keys, or the sibling schema that does take it."""
    name = loc[-1] if loc else key
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return f"{key}: unknown key{source}"
    fields = list(parent.model_fields)
    tag = tag_of(parent)
    owner = _sibling_owner(parent, str(name)) if tag is not None else None
    if tag is not None and owner is not None:
        return f"{key}: only used by {owner}, but {dotted(loc[:-1]) or 'it'}.{tag[0]} is {tag[1][0]!r}{source}"
    if not fields:
        return f"{key}: unknown key{source}; {loc[-2] if len(loc) > 1 else 'this'} takes no options"
    hint = suggest(name, fields)
    return f"{key}: unknown key{source}{hint or '; valid keys: ' + ', '.join(fields)}"


# Tagged unions register their members here (name → member schemas), so an unknown key can name its owner.
SIBLINGS: dict[type, Sequence[type[BaseModel]]] = {}


def _sibling_owner(member: type[BaseModel], key: str) -> str | None:
    for sibling in SIBLINGS.get(member, []):
        tag = tag_of(sibling)
        if tag is not None and key in sibling.model_fields:
            return tag[1][0]
    return None


def describe(err: Any, model: type[BaseModel], raw: Any = None, touched: frozenset[str] = frozenset()) -> str:
    """One pydantic error as `dotted.key: what was expected, got what` (`(from --set)` when an override did it)."""
    loc, parent = resolve(model, tuple(err["loc"]))
    key = dotted(loc)
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    plain = re.sub(r"\[(-?\d+)\]", r".\1", key)  # as --set writes it; an override at, above or below it counts
    from_set = any(f"{plain}.".startswith(f"{t}.") or f"{t}.".startswith(f"{plain}.") for t in touched)
    source = " (from --set)" if from_set else ""
    if kind == "extra_forbidden":
        return _unknown_key(key, loc, parent, source)
    if kind == "invalid_key":
        return f"{dotted(loc[:-1]) or 'config'}: keys must be names (strings), got {shorten(value)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _unknown_tag(key, ctx, value, source)
    if kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
        field, sep, rest = message.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+", field):  # "target: ..." raised by the section's own check
            return f"{key}.{field}: {rest}{source}" if key else message
        return f"{key}: {message}{source}" if key else message
    hint = suggest(value, re.findall(r"'([^']*)'", str(ctx.get("expected", "")))) if kind == "literal_error" else ""
    number = _takes_floats(parent, loc[-1] if loc else None)
    return f"{key}: expected {_expected(kind, ctx, value, err['msg'], number)}, got {shorten(value)}{source}{hint}"


def _takes_floats(parent: Any, key: Any) -> bool:
    """Whether the field `key` of the schema `parent` is typed float (e.g. `alpha: float`, given -1)."""
    field = parent.model_fields.get(key) if isinstance(parent, type) and issubclass(parent, BaseModel) else None
    return field is not None and float in _members(field.annotation)


def _unknown_tag(key: str, ctx: dict[str, Any], value: Any, source: str) -> str:
    tags = [t.strip("'") for t in str(ctx.get("expected_tags", "")).split(", ")]
    tag = ctx.get("tag")
    if tag is None:
        return f"{key}: expected a mapping with a name (one of: {', '.join(tags)}), got {shorten(value)}"
    field = str(ctx.get("discriminator", "")).strip("'")
    what = re.sub(r"\[-?\d+\]$", "", key).rsplit(".", 1)[-1].removesuffix("s")  # layers[2] → layer
    key = key if field == "kind" else f"{key}.{field}"  # a layer is named by its key, an optimizer by `name`
    return f"{key}: unknown {what} {shorten(tag)}{source}{suggest(tag, tags)}; expected one of: {', '.join(tags)}"


def merge(problems: list[str]) -> list[str]:
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
