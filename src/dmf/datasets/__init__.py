"""Data sets: MovieLens (local copy, cache or official download) and a synthetic generator.

- :func:`movielens`: the GroupLens MovieLens releases as :class:`dmf.Ratings`
  (``split="u1"`` ... for the official 100K splits); :func:`movielens_items`
  gives movie titles
  (:func:`read_movielens_items` from a given ``u.item``/``movies.dat``/``movies.csv``).
- :func:`synthetic`: power-law users and items, a low-rank truth plus noise,
  half-star ratings, generated block by block.
"""

from dmf._errors import DatasetError
from dmf.datasets._movielens import (
    cache_dir,
    movielens,
    movielens_items,
    movielens_path,
    read_movielens_items,
)
from dmf.datasets._synthetic import synthetic

__all__ = [
    "DatasetError",
    "cache_dir",
    "movielens",
    "movielens_items",
    "movielens_path",
    "read_movielens_items",
    "synthetic",
]
