"""Ratings in: readers, cleaning, id maps, row-blocked sparse matrices and splits."""

from dmf.data._io import from_dask, from_pandas, read_csv, read_parquet
from dmf.data._ratings import Ratings

__all__ = ["Ratings", "from_dask", "from_pandas", "read_csv", "read_parquet"]
