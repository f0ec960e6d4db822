"""Item titles for the page: MovieLens item files, or any CSV with item and title."""

from __future__ import annotations

import os

import pandas as pd

import dmf
from dmf.datasets import read_movielens_items

__all__ = ["read_titles"]


def read_titles(path: str, items: pd.Index) -> dict[int, str]:
    """``{item code: title}`` of the model's items found in ``path``.

    ``path`` is MovieLens' ``u.item`` (ML-100K), ``movies.dat`` (1M, 10M),
    a ``movies.csv`` (``movieId,title,...``) or any CSV with ``item`` and
    ``title`` columns. Titles of items the model does not have are not used
    (a catalogue lists items nobody rated); the page shows ids where a title
    is missing.
    """
    if not os.path.exists(path):
        raise dmf.ParameterError(f"titles file {path} does not exist")
    try:
        if os.path.basename(path) in ("u.item", "movies.dat"):
            frame = read_movielens_items(path).reset_index()
        else:
            frame = pd.read_csv(path).rename(columns={"movieId": "item"})
    except (ValueError, IndexError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise dmf.ParameterError(f"titles file {path} cannot be read: {e}") from e
    if not {"item", "title"} <= set(frame.columns):
        raise dmf.ParameterError(
            f"titles file {path} needs columns item and title (or MovieLens' movieId, title); "
            f"it has {list(frame.columns)}"
        )
    codes = items.get_indexer(pd.Index(frame["item"].to_numpy()))
    keep = codes >= 0
    titles = frame["title"].astype(str).to_numpy()[keep]
    return dict(zip(codes[keep].tolist(), titles.tolist(), strict=True))
