"""Deterministic outputs: tidy CSV, meta.json, JSON payloads and terminal tables.

CSV cells use Python's shortest round-trip float repr, so the same inputs and seed give
byte-identical files on every run.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


def package_version() -> str:
    """The installed sedna-bft version (falls back to the source tree's)."""
    try:
        from importlib.metadata import version

        return version("sedna-bft")
    except Exception:  # not installed: the source tree is the version
        return "0.1.0"


def clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None, tuples lists, numpy scalars Python ones."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cell(value: Any) -> str:
    """One CSV cell."""
    value = clean(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Tidy CSV: one header, one row per observation, fixed column order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    path.write_text(buf.getvalue(), encoding="utf-8")


def write_meta(
    path: Path, command: str, parameters: Mapping[str, Any], seed: int | None, files: Sequence[str]
) -> None:
    """meta.json: what produced the directory (no timestamps, so reruns are identical)."""
    meta = {
        "command": command,
        "version": package_version(),
        "seed": seed,
        "parameters": clean(dict(parameters)),
        "files": sorted(files),
    }
    path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@dataclass
class TextTable:
    """A table for the terminal: columns are (header with its unit, row key)."""

    title: str
    columns: Sequence[tuple[str, str]]
    rows: Sequence[Mapping[str, Any]]


@dataclass
class View:
    """What a command prints without --json: a title, tables and notes."""

    title: str
    tables: list[TextTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def fmt(value: Any) -> str:
    """A cell for people: 4 significant digits, scientific below 1e-3, words for flags."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and math.isinf(value):  # before clean(), which makes it null
        return "∞" if value > 0 else "−∞"
    value = clean(value)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0.0:
            return "0"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def render(view: View) -> str:
    """Aligned plain-text tables (numbers right-aligned)."""
    lines = [view.title, "=" * len(view.title)]
    for table in view.tables:
        cells = [[fmt(row.get(key)) for _, key in table.columns] for row in table.rows]
        heads = [head for head, _ in table.columns]
        widths = [
            max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)
        ]
        lines += ["", table.title]
        lines.append("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
        for r in cells:
            parts = [
                (c.rjust(w) if _numeric(c) else c.ljust(w))
                for c, w in zip(r, widths, strict=True)
            ]
            lines.append("  ".join(parts).rstrip())
    if view.notes:
        lines.append("")
        lines += [f"note: {n}" for n in view.notes]
    return "\n".join(lines) + "\n"


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] in "-−∞." or cell == "—")


def emit(
    payload: Mapping[str, Any], as_json: bool, view: View | None, out: TextIO | None = None
) -> None:
    """--json: the complete JSON; otherwise the view's tables (or key/value lines)."""
    out = out or sys.stdout
    data = clean(dict(payload))
    if as_json:
        out.write(json.dumps(data, indent=2) + "\n")
        return
    if view is None:
        view = View("result", [TextTable("", [("key", "k"), ("value", "v")],
                                         [{"k": k, "v": v} for k, v in data.items()])])
    out.write(render(view))


def markdown_table(columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub-style markdown table (report.md, docs)."""
    heads = [h for h, _ in columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join("---" for _ in heads) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k)) for _, k in columns) + " |")
    return "\n".join(lines) + "\n"
