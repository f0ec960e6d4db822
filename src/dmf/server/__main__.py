"""``python -m dmf.server STORE [options]``: the same as ``dmf serve``."""

import argparse
import sys

import dmf
from dmf.server._run import add_arguments, main

parser = argparse.ArgumentParser(prog="python -m dmf.server", description="Serve a dmf model.")
add_arguments(parser)
try:
    main(parser.parse_args())
except dmf.DMFError as e:
    print(f"dmf serve: error: {e}", file=sys.stderr)
    sys.exit(2)
