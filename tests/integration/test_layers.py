"""The package's layers: one direction of dependency, no import cycles."""

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_import_linter_contract_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    out = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 kept, 0 broken" in out.stdout


def test_no_import_cycles_even_in_functions():
    graph = grimp.build_graph("dmf")  # grimp reads imports inside functions too
    cycles = [
        (m, n)
        for m in sorted(graph.modules)
        if m != "dmf"
        for n in graph.find_modules_directly_imported_by(m)
        if n != "dmf" and graph.chain_exists(n, m)
    ]
    assert cycles == []
    # below the front ends nothing reaches back into the package root
    back = [
        m
        for m in graph.find_modules_that_directly_import("dmf")
        if not m.startswith(("dmf.cli", "dmf.server"))
    ]
    assert back == []
