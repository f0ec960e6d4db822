"""What every benchmark script records beside its figures, and how it writes them.

A script's results go to ``docs/_data/<script>.json``; ``tools/render_docs.py``
renders them into the pages through the script's own ``figures(data)``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "docs" / "_data"


def default_json(script: str) -> Path:
    return DATA / f"{Path(script).stem}.json"


def context(script: str, argv: list[str] | None = None) -> dict[str, Any]:
    """When, by which command, on what machine and under what load a run started."""
    args = sys.argv[1:] if argv is None else argv
    return {
        "command": " ".join(["python", f"tools/bench/{Path(script).name}", *args]).strip(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "load_before": os.getloadavg()[0],
    }


def write(path: Path, result: dict[str, Any]) -> None:
    result["load_after"] = os.getloadavg()[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {path}; now run: python tools/render_docs.py", file=sys.stderr)


def measured(result: dict[str, Any]) -> str:
    """One sentence: the command, the time and the machine's load around the run."""
    return (
        f"Measured {result['when']} by `{result['command']}`, 1-minute load average "
        f"{result['load_before']:.1f} before and {result.get('load_after', float('nan')):.1f} "
        "after (2 cores)."
    )
