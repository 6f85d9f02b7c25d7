"""Plain-text summary tables (fixed-width columns, floats with a fixed number of decimals)."""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["format_table", "print_table"]


def _cell(value: Any, float_digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{float_digits}f}"
    return "" if value is None else str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, *,
                 float_digits: int = 4, title: str | None = None) -> str:
    """Rows (dicts) as an aligned text table; ``columns`` picks and orders the keys (default: first row's)."""
    if not rows:
        raise ValueError("format_table needs at least one row")
    columns = list(columns or rows[0].keys())
    cells = [[_cell(row.get(col), float_digits) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    rule = "-+-".join("-" * w for w in widths)
    lines = [" | ".join(col.ljust(w) for col, w in zip(columns, widths)), rule]
    lines += [" | ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    if title:
        lines.insert(0, title)
    return "\n".join(lines)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, **kwargs: Any) -> None:
    """Print ``format_table(rows, columns, **kwargs)`` to stdout."""
    print(format_table(rows, columns, **kwargs), flush=True)
