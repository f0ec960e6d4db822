"""The documentation site builds with warnings as errors; the notebooks run top to bottom.

Doctests of ``src/dmf`` run through pytest's ``--doctest-modules`` (pyproject);
here: every public name has a runnable example, the Sphinx build, and the
notebooks (executed with nbclient on small data, stored without outputs).
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dmf

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED_NOTEBOOKS = [
    "01-quickstart.ipynb",
    "02-distributed.ipynb",
    "03-compare.ipynb",
    "04-implicit.ipynb",
    "05-persistence-and-serving.ipynb",
]
#: Pages other parts of the guide own; each must be in the site.
GUIDE_PAGES = ["data", "als", "sgd", "evaluation", "persistence", "performance"]


def _public_objects():
    """(name, object) for every exported function and class and their public methods."""
    for name in dmf.__all__:
        obj = getattr(dmf, name)
        if inspect.ismodule(obj):
            for sub in getattr(obj, "__all__", []):
                member = getattr(obj, sub)
                if callable(member) and not (
                    inspect.isclass(member) and issubclass(member, BaseException)
                ):
                    yield f"{name}.{sub}", member
            continue
        if not callable(obj) or (inspect.isclass(obj) and issubclass(obj, BaseException)):
            continue  # errors are documented by the functions raising them
        yield name, obj
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(value):
                    yield f"{name}.{attr}", value


def test_every_public_name_has_a_runnable_example():
    missing = [
        name
        for name, obj in _public_objects()
        if ">>>" not in (inspect.getdoc(obj) or "") or "Examples" not in (inspect.getdoc(obj) or "")
    ]
    assert not missing, f"public names without an Examples section: {missing}"


def test_guide_pages_and_toctree():
    index = (DOCS / "index.md").read_text()
    own = ["install", "quickstart", "cli", "models", "distributed", "serving", "api"]
    own += ["coming-from-spark", "coming-from-surprise", "coming-from-implicit"]
    own += ["coming-from-lenskit", "changelog", "notebooks", "architecture"]
    for page in GUIDE_PAGES + own:
        assert (DOCS / f"{page}.md").is_file(), page
        assert f"\n{page}\n" in index, f"{page} is not in the toctree of docs/index.md"


def _copy_sources(dest: Path) -> Path:
    """docs/, notebooks/ and CHANGELOG.md copied so the build writes nothing in the checkout."""
    shutil.copytree(
        DOCS, dest / "docs", ignore=shutil.ignore_patterns("_build", "generated", "notebooks")
    )
    shutil.copytree(ROOT / "notebooks", dest / "notebooks")
    shutil.copy(ROOT / "CHANGELOG.md", dest / "CHANGELOG.md")
    return dest / "docs"


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    src = _copy_sources(tmp_path)
    out = tmp_path / "html"
    env = {**os.environ, "DMF_PROGRESS": "lines"}  # plain-text progress in the outputs
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", src, out],
        capture_output=True,
        text=True,
        timeout=1500,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (out / "api.html").read_text()
    for name in ("dmf.fit", "dmf.ALS", "dmf.SGD", "dmf.evaluate", "dmf.load"):
        assert name in api
    for nb in EXPECTED_NOTEBOOKS:  # executed by the build: outputs, and plots where drawn
        page = (out / "notebooks" / nb.replace(".ipynb", ".html")).read_text()
        assert "cell_output" in page, nb
        assert "Traceback" not in page, nb
    plots = [
        nb
        for nb in EXPECTED_NOTEBOOKS
        if "<img" in (out / "notebooks" / nb.replace(".ipynb", ".html")).read_text()
    ]
    assert plots, "no notebook page shows a plot"
    assert not list((ROOT / "notebooks").glob("*.html")), "a notebook wrote into notebooks/"
    assert "Unreleased" in (out / "changelog.html").read_text()


def test_notebooks_present_and_saved_without_outputs():
    import nbformat

    assert [p.name for p in NOTEBOOKS] == EXPECTED_NOTEBOOKS
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


def _listed_in_api_reference() -> set[str]:
    text = (DOCS / "api.md").read_text()
    return {line.strip() for line in text.splitlines() if line.startswith("   ") and line.strip()}


def test_api_reference_lists_every_public_name():
    listed = _listed_in_api_reference()
    want = set()
    for name in dmf.__all__:
        obj = getattr(dmf, name)
        if name == "__version__":
            continue
        if inspect.ismodule(obj):
            want |= {f"{name}.{sub}" for sub in obj.__all__ if sub not in dmf.__all__}
        else:
            want.add(name)
    missing = sorted(want - listed - {":toctree: generated", ":nosignatures:"})
    assert not missing, f"docs/api.md does not list {missing}"
