"""Entry point of ``python -m eval.refseg`` (see ``eval.refseg.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
