"""The ``dmf`` command line: ``demo``, ``fit``, ``evaluate``, ``recommend``, ``info``, ``datasets``.

Bad input (a missing file, an unknown method, wrong column names, a store
that is not a model, ...) ends with exit status 2 and one line on stderr, no
traceback; ``--debug`` shows the traceback instead. Results go to stdout,
progress and notes to stderr.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import dmf
from dmf.cli._common import CLIError
from dmf.cli._parser import build_parser

__all__ = ["CLIError", "build_parser", "main"]


# -------------------------------------------------------------------- main
def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dmf`` command line; returns the exit status.

    Examples
    --------
    >>> from dmf.cli._main import main
    >>> main(["datasets", "fetch", "nope"])  # doctest: +SKIP
    2
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("dmf: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            traceback.print_exc()
        bad_input = isinstance(e, (CLIError, dmf.DMFError, OSError))
        if bad_input:
            print(f"dmf {args.command}: error: {_one_line(e)}", file=sys.stderr)
            return 2
        print(
            f"dmf {args.command}: internal error: {type(e).__name__}: {_one_line(e)}"
            + ("" if debug else " (rerun with --debug for the traceback)"),
            file=sys.stderr,
        )
        return 1
    finally:
        sys.stdout.flush()
