"""``python -m dmf``: the command line (see ``python -m dmf --help``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dmf.cli._main import main as _main

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dmf`` console script and ``python -m dmf``; returns the exit status."""
    return _main(argv)


if __name__ == "__main__":
    sys.exit(main())
