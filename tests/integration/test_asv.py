"""The asv suite stays importable and well-formed.

``asv check --python=same`` discovers every benchmark in ``benchmarks/`` in
this environment without running any: a broken benchmark module (an import
error, a bad signature, a standalone script doing work at import) fails here,
so it fails the README's test command and CI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_asv_check() -> None:
    pytest.importorskip("asv")
    proc = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "No problems found" in out, out
