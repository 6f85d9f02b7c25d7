"""Entry point of ``python -m eval.rvos`` (see ``eval.rvos.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
