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
    own += ["coming-from-spark", "coming-from-surprise", "changelog", "notebooks"]
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
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", src, out],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (out / "api.html").read_text()
    for name in ("dmf.fit", "dmf.ALS", "dmf.SGD", "dmf.evaluate", "dmf.load"):
        assert name in api
    assert (out / "notebooks" / "01-quickstart.html").is_file()
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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    """Execute a notebook top to bottom in a fresh kernel, in a scratch folder."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("DMF_PROGRESS")
    os.environ["DMF_PROGRESS"] = "lines"  # plain text progress in the executed outputs
    try:
        client = nbclient.NotebookClient(
            nb,
            timeout=300,
            kernel_name="python3",
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("DMF_PROGRESS", None)
        else:
            os.environ["DMF_PROGRESS"] = env_before
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors
