"""Every measured figure on the pages comes from the JSON a benchmark script wrote.

``tools/render_docs.py`` renders the marked regions of README.md and docs/*.md from
``docs/_data/*.json``; these tests fail when a page and its JSON disagree, or when a
page carries a table of measurements outside any marked region.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def render_docs():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "tools" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["render_docs"] = module
    spec.loader.exec_module(module)
    return module


def test_pages_agree_with_the_benchmark_json(render_docs):
    stale = [
        str(page.relative_to(ROOT))
        for page in render_docs.pages()
        if render_docs.render(page.read_text()) != page.read_text()
    ]
    assert not stale, f"figures differ from docs/_data/*.json in {stale}: run tools/render_docs.py"


#: Pages whose measured tables still await a script that writes their JSON.
PENDING = {
    "docs/bpr.md": "the BPR validation tables (their tuning runs are not yet a script)",
    "docs/performance.md": "the communication table (tests/integration/test_comm.py)",
    "docs/serving.md": "the load-test table (tools/bench/serve_load.py)",
}


def test_no_measured_table_outside_a_figures_block(render_docs):
    found = {
        name: rows
        for page in render_docs.pages()
        if (rows := render_docs.unsourced(page.read_text()))
        and (name := str(page.relative_to(ROOT))) not in PENDING
    }
    assert not found, f"measured figures typed into the pages, not rendered from JSON: {found}"


def test_every_region_names_a_script_and_key(render_docs):
    refs = set()
    for page in render_docs.pages():
        text = page.read_text()
        refs |= {m["ref"] for m in render_docs.BLOCK.finditer(text)}
        refs |= {m["ref"] for m in render_docs.INLINE.finditer(text)}
    assert refs, "no page renders any figure"
    for ref in sorted(refs):
        assert render_docs.lookup(ref).strip(), ref


def test_the_checker_catches_a_hand_edited_figure(render_docs):
    page = next(p for p in render_docs.pages() if "<!-- figure " in p.read_text())
    text = page.read_text()
    m = render_docs.INLINE.search(text)
    edited = text[: m.start("body")] + "999.9x" + text[m.end("body") :]
    assert render_docs.render(edited) == text
    table = "| data | fit s |\n|---|---:|\n| ML-100K | 0.46 |\n"
    assert render_docs.unsourced(table) == ["| ML-100K | 0.46 |"]
    params = "| parameter | default |\n|---|---:|\n| `reg` | 0.02 |\n"
    assert render_docs.unsourced(params) == []
