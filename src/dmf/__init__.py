"""dmf: distributed matrix factorisation for recommender systems on Dask.

Public names load on first use (SPEC 1 lazy loading): ``import dmf`` stays
cheap, and ``dmf.fit`` imports the models, Dask and numba when first touched.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from dmf import _errors
from dmf._errors import *  # noqa: F403 (the exception and warning types, by _errors.__all__)

try:
    __version__ = version("dask-mf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

#: Where each lazily loaded public name lives.
_LAZY = {
    "METHODS": "dmf.api",
    "cross_validate": "dmf.api",
    "fit": "dmf.api",
    "grid_search": "dmf.api",
    "Ratings": "dmf.data",
    "from_dask": "dmf.data",
    "from_pandas": "dmf.data",
    "read_csv": "dmf.data",
    "read_parquet": "dmf.data",
    "evaluate": "dmf.evaluation",
    "ALS": "dmf.models",
    "BPR": "dmf.models",
    "SGD": "dmf.models",
    "Baseline": "dmf.models",
    "Blend": "dmf.models",
    "Popular": "dmf.models",
    "RankBlend": "dmf.models",
    "Recommender": "dmf.models",
    "blend": "dmf.models",
    "load": "dmf.store",
}
_SUBMODULES = ("datasets", "split", "testing")

if TYPE_CHECKING:
    from dmf import datasets, split, testing
    from dmf.api import METHODS, cross_validate, fit, grid_search
    from dmf.data import Ratings, from_dask, from_pandas, read_csv, read_parquet
    from dmf.evaluation import evaluate
    from dmf.models import ALS, BPR, SGD, Baseline, Blend, Popular, RankBlend, Recommender, blend
    from dmf.store import load


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"dmf.{name}")
    else:
        raise AttributeError(f"module 'dmf' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ALS",
    "BPR",
    "METHODS",
    "SGD",
    "Baseline",
    "Blend",
    "Popular",
    "RankBlend",
    "Ratings",
    "Recommender",
    "__version__",
    "blend",
    "cross_validate",
    "datasets",
    "evaluate",
    "fit",
    "from_dask",
    "from_pandas",
    "grid_search",
    "load",
    "read_csv",
    "read_parquet",
    "split",
    "testing",
]
# The exception and warning types, as dmf._errors lists them.
__all__ += _errors.__all__
