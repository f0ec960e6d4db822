"""dmf: distributed matrix factorisation for recommender systems on Dask."""

from importlib.metadata import PackageNotFoundError, version

from dmf import datasets, split, testing
from dmf._als import ALS
from dmf._api import METHODS, fit
from dmf._base import Recommender
from dmf._bias import Baseline
from dmf._blend import Blend, blend
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
from dmf._io import from_dask, from_pandas, read_csv, read_parquet
from dmf._metrics import evaluate
from dmf._persist import load
from dmf._ratings import Ratings
from dmf._search import cross_validate, grid_search
from dmf._sgd import SGD

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
