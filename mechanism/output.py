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


def emit(payload: Mapping[str, Any], as_json: bool, title: str, out: TextIO | None = None) -> None:
    """--json: JSON to stdout; a terminal: an aligned table; a pipe: plain key<TAB>value."""
    out = out or sys.stdout
    data = clean(dict(payload))
    if as_json:
        out.write(json.dumps(data, indent=2) + "\n")
        return
    items = [(k, _text(v)) for k, v in data.items()]
    if out.isatty():
        width = max((len(k) for k, _ in items), default=0)
        out.write(f"{title}\n{'-' * len(title)}\n")
        for k, v in items:
            out.write(f"{k.ljust(width)}  {v}\n")
    else:
        for k, v in items:
            out.write(f"{k}\t{v}\n")


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def table_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain fixed-width table (used for report.md and terminal listings)."""
    cells = [[_text(clean(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines) + "\n"
