"""Tables as Markdown (and CSV): one renderer for the evaluation report, the model card, the online loop's rounds
and the sweep summaries."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: the header, its rule, one line per row of (already formatted) cells."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def cell(value: Any, digits: int = 4) -> str:
    """A table cell: floats to `digits` decimals, None blank, anything else as str."""
    return f"{value:.{digits}f}" if isinstance(value, float) else ("" if value is None else str(value))


def write_table(rows: list[dict[str, Any]], header: list[str], out: Path, digits: int = 4) -> list[Path]:
    """`rows` as `<out>.csv` and a Markdown table `<out>.md` (floats to `digits` decimals, None as blank)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    lines = markdown_table(header, ([cell(r.get(h), digits) for h in header] for r in rows))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return [out.with_suffix(".csv"), out.with_suffix(".md")]
