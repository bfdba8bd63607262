"""Rich tables of `nnctl runs` and `nnctl diff` (docs/reference.md#nnctl-runs).

Apart from nnctl.render, whose training display imports the whole training stack (numpy, pandas,
pydantic: 0.3 to 0.5 s), so that listing hundreds of runs costs little more than reading their files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from nnctl.cells import fmt, when


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


PARAM_WIDTH = 24  # a config value wider than this wraps inside its column


@dataclass
class _Column:
    """A candidate column of `nnctl runs`: lower `priority` is shown first when the width runs out."""

    key: str
    header: str
    cells: list[str]
    priority: int
    param: bool = False

    @property
    def width(self) -> int:
        natural = max(len(self.header), *map(len, self.cells))
        return min(natural, PARAM_WIDTH) if self.param else natural


def _paths(values: list[Any]) -> list[str] | None:
    """Absolute file paths (data.train) relative to their common folder, so the file names show; else None."""
    present = [v for v in values if v is not None]
    if not present or not all(isinstance(v, str) and os.path.isabs(v) for v in present):
        return None
    common = os.path.commonpath([os.path.dirname(v) for v in present])
    return [os.path.relpath(v, common) if v is not None else "–" for v in values]


def _run_columns(rows: list[dict[str, Any]], keys: list[str], short: dict[str, str]) -> list[_Column]:
    """The columns of `nnctl runs` in display order: the results and what differs first, then time and date."""
    present = list(dict.fromkeys(k for row in rows for k in row))  # every row's keys, in first-seen order
    columns = [_Column("run", "run", [row["run"] for row in rows], 0)]
    columns.append(_Column("status", "status", [row["status"] for row in rows], 1))
    spec = [("epochs", "epochs", 1001), ("best_epoch", "best", 1000)]
    metrics = [k for k in present if k.startswith("validation_")]
    spec += [(m, "val_" + m[len("validation_") :], 2 if m == "validation_loss" else 3) for m in metrics]
    spec += [(m, m, 4) for m in present if m.startswith("test_")]  # data.test's headline metric (test_metrics.json)
    columns += [_Column(k, h, [fmt(row.get(k)) for row in rows], p) for k, h, p in spec]
    for i, key in enumerate(keys):
        cells = _paths([row["params"].get(key) for row in rows]) or [fmt(row["params"].get(key)) for row in rows]
        columns.append(_Column(key, short[key], cells, 10 + i, param=True))
    columns.append(_Column("seconds", "seconds", [fmt(row.get("seconds")) for row in rows], 1002))
    columns.append(_Column("created", "created", [when(row.get("created")) for row in rows], 1003))
    return columns


def runs_table(
    rows: list[dict[str, Any]], keys: list[str], short: dict[str, str], title: str, width: int
) -> tuple[Table, list[str]]:
    """`nnctl runs`: one row per run, the validation loss and metric, and one column per differing config key.
    The columns that fit in `width` are shown, the most telling first; returns the table and the columns left out."""
    columns = _run_columns(rows, keys, short)
    chosen: set[str] = set()
    used = -2  # two spaces between columns, none at the edges
    full = False  # config keys are shown in order: once one does not fit, neither do the ones after it
    for column in sorted(columns, key=lambda c: c.priority):
        fits = used + column.width + 2 <= width or not chosen
        if fits and not (column.param and full):
            chosen.add(column.key)
            used += column.width + 2
        full = full or (column.param and not fits)
    table = Table(
        title=Text(title),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    shown = [c for c in columns if c.key in chosen]
    for column in shown:
        numeric = column.key not in ("run", "status", "created") and all(
            _is_number(c) for c in column.cells if c != "–"
        )
        table.add_column(
            Text(column.header),
            justify="right" if numeric else "left",
            no_wrap=not column.param,
            overflow="fold",
            max_width=PARAM_WIDTH if column.param else None,
        )
    colours = {"finished": "green", "interrupted": "yellow", "diverged": "red", "training": "cyan"}
    for i, row in enumerate(rows):
        texts = [Text(c.cells[i]) for c in shown]  # Text: a run named `[x]` is not markup
        if "status" in chosen:
            texts[1].stylize(colours.get(row["status"], "white"))
        table.add_row(*texts)
    return table, [c.key for c in columns if c.key not in chosen]


def diff_tables(diff: dict[str, Any]) -> list[Any]:
    """`nnctl diff`: which run is A and which B, the config keys that differ, the metrics side by side, and
    whether the data were the same."""
    out: list[Any] = [Text(f"A: {diff['a']}\nB: {diff['b']}")]
    if diff["config"]:
        config = Table(title="config keys that differ", title_justify="left")
        config.add_column("key", no_wrap=True)
        for column in ("A", "B"):
            config.add_column(column, overflow="fold")
        for row in diff["config"]:
            config.add_row(Text(row["key"]), Text(fmt(row["a"])), Text(fmt(row["b"])))
        out.append(config)
    else:
        out.append(Text("config: identical"))
    metrics = Table(title="at the best epoch", title_justify="left")
    for column in ("metric", "A", "B"):
        metrics.add_column(column, justify="left" if column == "metric" else "right")
    for name, pair in diff["metrics"].items():
        metrics.add_row(Text(name), Text(fmt(pair["a"])), Text(fmt(pair["b"])))
    return [*out, metrics, Text(_data_line(diff))]


def _data_line(diff: dict[str, Any]) -> str:
    if diff["same_data"] is None:
        return "data: unknown (a run without provenance in model.json: trained before nnctl recorded it)"
    if diff["same_data"]:
        sha = diff["data"]["train"]["a"]
        return f"data: the same files (training sha256 {sha[:12]}…)"
    differing = [w for w, pair in diff["data"].items() if pair["a"] != pair["b"]]
    names = {"train": "training", "validation": "validation"}
    return f"data: different {' and '.join(names[w] for w in differing)} data (sha256 differs)"
