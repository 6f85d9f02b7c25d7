"""Plain-text summary tables (fixed-width columns, floats with a fixed number of decimals)."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["format_table", "print_table"]


def _cell(value: Any, float_digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{float_digits}f}"
    return "" if value is None else str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *,
                 float_digits: int = 4, title: str | None = None, align: str = "right") -> str:
    """Rows (dicts) as an aligned text table; ``columns`` picks and orders the keys (default: first row's).
    ``align="right"`` right-aligns every cell; ``"auto"`` right-aligns the columns whose values are all numbers and
    left-aligns the others (lines then carry no trailing spaces)."""
    if not rows:
        raise ValueError("format_table needs at least one row")
    if align not in ("right", "auto"):
        raise ValueError(f"align must be 'right' or 'auto', got {align!r}")
    columns = list(columns or rows[0].keys())
    cells = [[_cell(row.get(col), float_digits) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    numeric = [align == "right" or all(isinstance(row.get(col), (int, float)) for row in rows) for col in columns]
    rule = "-+-".join("-" * w for w in widths)
    lines = [" | ".join(col.ljust(w) for col, w in zip(columns, widths)), rule]
    lines += [" | ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)) for r in cells]
    if align == "auto":
        lines = [line.rstrip() for line in lines]
    if title:
        lines.insert(0, title)
    return "\n".join(lines)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, **kwargs: Any) -> None:
    """Print ``format_table(rows, columns, **kwargs)`` to stdout."""
    print(format_table(rows, columns, **kwargs), flush=True)
