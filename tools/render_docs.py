"""Render the measured figures in README.md and docs/ from the benchmark scripts' JSON.

Every measured figure on a page sits between markers that name where it comes from::

    <!-- figures peers:ml100k -->
    | task | library | ... |          (a whole block: a table, a list, a paragraph)
    <!-- /figures -->

    ... is <!-- figure peers:als_speedup -->18-38x<!-- /figure --> faster ...   (inline)

``peers:ml100k`` means: ``tools/bench/peers.py`` wrote ``docs/_data/peers.json``, and
that script's ``figures(data)`` returns a mapping whose ``"ml100k"`` entry is the text.
The scripts write JSON only; this renderer is the one place that puts figures on pages.

    python tools/render_docs.py           # rewrite the marked regions from the JSON
    python tools/render_docs.py --check   # exit 1 naming each region that disagrees
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "_data"
SCRIPTS = ROOT / "tools" / "bench"

BLOCK = re.compile(
    r"(?P<open><!-- figures (?P<ref>[\w-]+:[\w.@-]+) -->\n)"
    r"(?P<body>.*?)(?P<close><!-- /figures -->)",
    re.S,
)
INLINE = re.compile(
    r"(?P<open><!-- figure (?P<ref>[\w-]+:[\w.@-]+) -->)(?P<body>.*?)(?P<close><!-- /figure -->)"
)
#: A table cell that reads like a measurement: seconds, ratios, memory, or a metric
#: with three or more decimals. Parameter tables (0.01, 64) do not match.
MEASURED = re.compile(
    r"\|[^|\n]*?(\b\d+(\.\d+)?\s?(s|ms|µs|ns|x|×|GB|MB|GiB|MiB|req/s|M/s)\b|\b\d\.\d{3,}\b)"
)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@cache
def script(name: str) -> ModuleType:
    path = SCRIPTS / f"{name}.py"
    if not path.is_file():
        raise SystemExit(f"no benchmark script {path.relative_to(ROOT)} for figures {name!r}")
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    if not hasattr(module, "figures"):
        raise SystemExit(f"{path.relative_to(ROOT)} has no figures(data) function")
    return module


@cache
def rendered(name: str) -> dict[str, str]:
    path = DATA / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"{path.relative_to(ROOT)} is missing: run tools/bench/{name}.py --json")
    data: dict[str, Any] = json.loads(path.read_text())
    return script(name).figures(data)


def lookup(ref: str) -> str:
    name, key = ref.split(":", 1)
    out = rendered(name)
    if key not in out:
        raise SystemExit(f"figures {ref!r}: {name}.figures() has {sorted(out)}, not {key!r}")
    return out[key]


def render(text: str) -> str:
    def block(m: re.Match[str]) -> str:
        body = lookup(m["ref"]).strip("\n") + "\n"
        return m["open"] + body + m["close"]

    def inline(m: re.Match[str]) -> str:
        return m["open"] + lookup(m["ref"]).strip() + m["close"]

    return INLINE.sub(inline, BLOCK.sub(block, text))


TARGET = re.compile(r"[<>≤≥]=?\s*[\d.,]+\s*[^\s|,;]*")
#: A table header naming a measurement: every number under it is a figure.
MEASURED_HEADER = re.compile(
    r"\b(s|ms|seconds|RMSE|MAE|precision|recall|NDCG|p@10|req(uests)?/s|GB|MB|speed-up|p50|p99)\b"
    r"|/s\b|@10",
    re.I,
)


def unsourced(text: str) -> list[str]:
    """Table rows that look measured but stand outside every figures block."""
    outside = INLINE.sub("", BLOCK.sub("", text))
    outside = re.sub(r"^```.*?^```", "", outside, flags=re.S | re.M)  # code is not a figure
    outside = TARGET.sub("", outside)  # "< 30 s" is a target, not a measurement
    found: list[str] = []
    header = None
    for line in outside.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        if header is None:
            header = line
            continue
        if set(line) <= set("|-: "):
            continue
        measured_table = MEASURED_HEADER.search(header) and re.search(r"\d\.\d", line)
        if measured_table or MEASURED.search(line):
            found.append(line)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report disagreements, write nothing")
    args = ap.parse_args(argv)
    stale = []
    for page in pages():
        text = page.read_text()
        new = render(text)
        if new != text:
            stale.append(page.relative_to(ROOT))
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        names = ", ".join(map(str, stale))
        print(f"figures disagree with docs/_data/*.json in: {names}", file=sys.stderr)
        print("run: python tools/render_docs.py", file=sys.stderr)
        return 1
    for page in stale:
        print(f"rendered {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
