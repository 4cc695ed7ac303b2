"""Writing results: CSV files, and the plain-text tables the CLI prints."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Progress = Callable[[int], None]
"""progress(episodes_done_since_last_call): lets the CLI advance a progress bar."""

Row = dict[str, Any]


@dataclass
class ExperimentResult:
    """What an experiment produced: its summary rows, the files it wrote, and the table columns to print."""

    name: str
    summary: list[Row]
    files: list[Path]
    columns: list[tuple[str, str]] = field(default_factory=list)


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows (all with the keys of the first) to `path`, creating its folder; floats keep full precision."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        if rows:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def format_cell(value: Any) -> str:
    """Short human form: floats with 3 decimals (or 1 when large), None and nan as '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A fixed-width table of `rows` with (key, header) columns."""
    cells = [[format_cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [max([len(header)] + [len(line[index]) for line in cells]) for index, header in enumerate(headers)]
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def plus_minus(mean: float, std: float) -> str:
    """'0.881 ± 0.010' (or '452.1 ± 9.3' for large values)."""
    return f"{format_cell(mean)} ± {format_cell(std)}"
