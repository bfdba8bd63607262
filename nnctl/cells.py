"""Values as the CLI shows them: table cells, user text that rich never reads as markup, JSON numbers, sizes and
`nnctl cache ls`'s listing (light: no numpy, so `nnctl --help` can import it and `nnctl cache` needs no training
stack)."""

from __future__ import annotations

import json
import math
from typing import Any

from rich.text import Text

# eval on a terminal: above this many classes the per-class table only with --per-class, and above half of it the
# largest confusions instead of the matrix. Here, not in nnctl.render, so that eval's --help can name it.
MAX_CLASSES_SHOWN = 20


def fmt(value: Any) -> str:
    """A value in a table: numbers to 4 significant digits, `–` for none; lists, dicts and booleans as compact JSON
    (`true`, `[16,8]`: as YAML and --set write them)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict | bool):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 epoch`, `3 epochs`; `words` is an irregular plural: plural(2, "entry", "entries") is `2 entries`."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def when(created: Any) -> str:
    """A recorded time stamp (`2024-05-01T12:34:56Z`, `…T12:34:56+0200`) to the minute, as recorded: `2024-05-01
    12:34`; `–` for none."""
    return created[:16].replace("T", " ") if isinstance(created, str) else "–"


def plain(value: Any) -> Text:
    """User text (paths, labels, names) as it is: never read as rich markup."""
    return Text(str(value))


def finite(value: Any) -> Any:
    """NaN and ±inf as None, through dicts and lists: JSON has no NaN (model.json, test_metrics.json, --json)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def human_bytes(n: int) -> str:
    """1234567 → '1.2 MB' (decimal units, as `ls -h --si` and `df -H` give them)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} B"


def cache_listing(entries: list[Any], root: Any) -> str:
    """`nnctl cache ls`: a title, then one line per entry, newest first, in aligned columns like `ls -l`
    (the source file last, so a narrow terminal wraps only the path)."""
    rows = [("entry", "size", "rows × columns", "dtype", "created", "source file")]
    for e in entries:
        if e.source is None:
            rows.append((e.key[:8], human_bytes(e.bytes), "", "", "", "(unfinished or damaged: rebuilt when used)"))
        else:
            shape = f"{e.rows:,} × {e.columns}"
            rows.append((e.key[:8], human_bytes(e.bytes), shape, e.dtype, when(e.created), e.source))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    right = (False, True, True, False, False)
    lines = [
        f"data cache {root}: {plural(len(entries), 'entry', 'entries')}, {human_bytes(sum(e.bytes for e in entries))}"
    ]
    for row in rows:
        cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=False)]
        lines.append("  ".join(cells + [row[5]]))
    return "\n".join(lines)
