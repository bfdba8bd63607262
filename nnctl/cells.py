"""Values as table cells: short numbers, and user text that rich never reads as markup (light: no numpy)."""

from __future__ import annotations

from typing import Any

from rich.text import Text


def fmt(value: Any) -> str:
    """A metric for a table: 4 significant digits, `–` for none."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plain(value: Any) -> Text:
    """User text (paths, labels, names) as it is: never read as rich markup."""
    return Text(str(value))
