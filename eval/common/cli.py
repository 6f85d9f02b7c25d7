"""The part of a harness command line every harness shares: ``--show-stats``, the run, exit codes."""

from __future__ import annotations

import sys
from typing import Callable

from .writer import ResultsWriteError

__all__ = ["run_harness_cli", "BAD_INPUT_ERRORS"]

BAD_INPUT_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError)


def run_harness_cli(show_stats: bool, print_stats: Callable[[], None], run: Callable[[], object],
                    failure_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Print the stats table or run; exit status 0, 1 for recorded sample failures (``failure_errors``),
    2 with a one-line ``error:`` message on bad input or a results folder that cannot be written (disk full,
    read-only: the run stopped at its first failed write and ``--resume`` continues it)."""
    try:
        if show_stats:
            print_stats()
            return 0
        run()
    except failure_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except BAD_INPUT_ERRORS + (ResultsWriteError,) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0
