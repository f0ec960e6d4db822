"""Sphinx configuration of dmf's documentation (MyST markdown, numpydoc, notebooks via myst-nb).

Build: ``python -m sphinx -W -b html docs docs/_build/html``. The notebooks in
``../notebooks`` are copied into ``docs/notebooks`` at build time and executed
by myst-nb (cached), so their outputs and plots are in the built pages.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dmf

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

project = "dmf"
author = "the dmf developers"
copyright = "the dmf developers"
release = dmf.__version__
version = release.split("+")[0]

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "generated/*.tmp", "**.ipynb_checkpoints", "README.md"]
root_doc = "index"

# MyST: $math$, ::: fences, headings linkable as page.md#anchor
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# Notebooks run during the build (outputs and plots in the pages), cached by content,
# each in a scratch folder so the files they write stay out of the checkout.
nb_execution_mode = "cache"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_in_temp = True

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# No network in CI: intersphinx inventories are not fetched.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

html_theme = "pydata_sphinx_theme"
html_title = f"dmf {version}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []
suppress_warnings = ["myst.header"]


def _copy_notebooks() -> None:
    """Mirror ../notebooks/*.ipynb into docs/notebooks (ignored by git)."""
    src = ROOT / "notebooks"
    dst = HERE / "notebooks"
    if not src.is_dir():
        return
    dst.mkdir(exist_ok=True)
    for nb in sorted(src.glob("*.ipynb")):
        target = dst / nb.name
        if not target.exists() or target.read_bytes() != nb.read_bytes():
            shutil.copyfile(nb, target)


_copy_notebooks()
