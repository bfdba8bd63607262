"""Safe YAML for configs: no Python objects, no duplicate keys, and a bound on what a small file can expand to.

A config is a few dozen values, so a document whose aliases expand past `MAX_VALUES` values, or that nests
deeper than `MAX_DEPTH`, is refused before anything is built from it (YAML "billion laughs").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from nnctl.errors import ConfigError

MAX_VALUES = 100_000  # scalars, lists and mappings after expanding aliases
MAX_DEPTH = 64
MAX_BYTES = 10 * 2**20


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads YAML 1.2 floats without a dot (`1e-3`, a string in YAML 1.1) and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (lines {seen[key]} and {line}); keep one", key_node.start_mark
                )
            if isinstance(key, str | int | float | bool):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class TooLarge(yaml.YAMLError):
    """The document expands to more values, or nests deeper, than a config ever needs."""


def _expanded_size(node: yaml.Node, memo: dict[int, int], depth: int = 0) -> int:
    """Values in `node` once every alias is expanded (aliases share nodes, so memoise by identity)."""
    if depth > MAX_DEPTH:
        raise TooLarge(f"is nested more than {MAX_DEPTH} levels deep")
    known = memo.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo, depth + 1) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo, depth + 1) + _expanded_size(v, memo, depth + 1) for k, v in node.value)
    if size > MAX_VALUES:
        raise TooLarge(f"expands to more than {MAX_VALUES:,} values (through YAML aliases?)")
    memo[id(node)] = size
    return size


def parse_yaml(text: str) -> Any:
    """yaml.safe_load, plus YAML 1.2 floats such as `1e-3`, duplicate keys refused, expansion bounded."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {})
        return loader.construct_document(node)
    except RecursionError:
        raise TooLarge("is nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a config file safely; errors name the file and line."""
    try:
        if path.is_char_device() or path.is_block_device():
            raise ConfigError(f"{path}: is a device, expected a YAML config file")
        if path.is_file() and path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a config is a small YAML file")
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
        raise ConfigError(f"{path}: {describe_yaml_error(exc)}") from None
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else f"a {type(raw).__name__}"
        raise ConfigError(f"{path}: expected a mapping of config keys (name, data, layers, ...), got {kind}")
    return raw


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """`invalid YAML (line L, column C): problem`, short whatever the document held."""
    if isinstance(exc, TooLarge):
        return f"refused: the YAML {exc}; a config is a few dozen values"
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = str(getattr(exc, "problem", None) or str(exc).splitlines()[0])
    return f"invalid YAML{where}: {problem[:200]}"


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
