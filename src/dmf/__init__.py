"""dmf: distributed matrix factorisation for recommender systems on Dask."""

from importlib.metadata import PackageNotFoundError, version

from dmf import datasets, split, testing
from dmf._errors import (
    ClusterError,
    ConvergenceError,
    DatasetError,
    DMFError,
    DMFWarning,
    NotFittedError,
    ParameterError,
    RatingsError,
    StoreError,
    UnknownIdError,
)
from dmf.api import METHODS, cross_validate, fit, grid_search
from dmf.data import Ratings, from_dask, from_pandas, read_csv, read_parquet
from dmf.evaluation import evaluate
from dmf.models import ALS, SGD, Baseline, Blend, Recommender, blend
from dmf.store import load

try:
    __version__ = version("dmf")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "ALS",
    "METHODS",
    "SGD",
    "Baseline",
    "Blend",
    "ClusterError",
    "ConvergenceError",
    "DMFError",
    "DMFWarning",
    "DatasetError",
    "NotFittedError",
    "ParameterError",
    "Ratings",
    "RatingsError",
    "Recommender",
    "StoreError",
    "UnknownIdError",
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
