"""Plain-text summary tables: ``litelvlm.table`` (shared by the CLIs and the harnesses)."""

from litelvlm.table import format_table, print_table

__all__ = ["format_table", "print_table"]
