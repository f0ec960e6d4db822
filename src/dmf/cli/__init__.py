"""The ``dmf`` command line."""

from dmf.cli._main import main

__all__ = ["main"]
