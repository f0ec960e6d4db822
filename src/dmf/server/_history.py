"""What each user has interacted with: the training interactions plus the served events.

The model store keeps factors, not ratings, so a server learns users' training
items from an optional interactions source (a CSV or Parquet file with
``user``, ``item`` and optionally ``rating`` columns) and keeps every user's
history changed by events beside it. A history is a user's item codes
(sorted) with their weights; it is what ``GET /recommend`` excludes and what
fold-in solves the user from. Snapshots write the changed histories as an
xarray Dataset in Zarr, complete only once renamed into place.
"""

from __future__ import annotations

import os
import shutil
import warnings
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

import dmf

__all__ = ["Histories", "read_interactions"]

_EMPTY_CODES = np.zeros(0, dtype=np.int64)
_EMPTY_WEIGHTS = np.zeros(0, dtype=np.float32)


def _first(values: Any, limit: int = 5) -> str:
    return ", ".join(str(v) for v in list(values)[:limit])


class Histories:
    """Per-user item histories: a CSR over the model's user codes plus changed users.

    Parameters
    ----------
    n_users : int
        Users of the model (rows of the training CSR).
    indptr, codes, weights : numpy.ndarray, optional
        Training interactions by model user code; item codes sorted per row.
    """

    def __init__(
        self,
        n_users: int,
        indptr: np.ndarray | None = None,
        codes: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        self.has_training = indptr is not None
        self.indptr = np.zeros(n_users + 1, np.int64) if indptr is None else indptr
        self.codes = _EMPTY_CODES if codes is None else codes
        self.weights = _EMPTY_WEIGHTS if weights is None else weights
        self.changed: dict[Any, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, user: Any, code: int) -> tuple[np.ndarray, np.ndarray]:
        """``(item codes, weights)`` of a user (model code ``-1``: not in the model)."""
        hit = self.changed.get(user)
        if hit is not None:
            return hit
        if code < 0 or code >= len(self.indptr) - 1:
            return _EMPTY_CODES, _EMPTY_WEIGHTS
        a, b = self.indptr[code], self.indptr[code + 1]
        return self.codes[a:b], self.weights[a:b]

    @staticmethod
    def merge(
        old: tuple[np.ndarray, np.ndarray], codes: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``old`` with ``(codes, weights)`` added; a repeated item takes the new weight."""
        keep = ~np.isin(old[0], codes)
        all_codes = np.concatenate([old[0][keep], codes])
        all_weights = np.concatenate([old[1][keep], weights]).astype(np.float32)
        order = np.argsort(all_codes, kind="stable")
        return all_codes[order], all_weights[order]

    # ------------------------------------------------------------- snapshots
    @staticmethod
    def write(path: str, changed: dict[Any, tuple[np.ndarray, np.ndarray]], items: Any) -> None:
        """Write ``changed`` histories to ``path`` (Zarr), complete-or-absent via a rename."""
        users = list(changed)
        lengths = np.array([len(changed[u][0]) for u in users], dtype=np.int64)
        indptr = np.zeros(len(users) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        codes = np.concatenate([changed[u][0] for u in users] or [_EMPTY_CODES])
        weights = np.concatenate([changed[u][1] for u in users] or [_EMPTY_WEIGHTS])
        if users and isinstance(users[0], str):
            user_values = np.empty(len(users), dtype=object)
            user_values[:] = users
        else:
            user_values = np.asarray(users, dtype=np.int64)
        ds = xr.Dataset(
            {
                "indptr": (("row",), indptr),
                "item": (("nnz",), np.asarray(items)[codes]),
                "weight": (("nnz",), weights.astype(np.float32)),
                "user": (("user",), user_values),
            },
            attrs={"dmf_histories": 1},
        )
        tmp = path + ".writing"
        shutil.rmtree(tmp, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False)
        os.rename(tmp, path)

    def read_changed(self, path: str, items: pd.Index) -> None:
        """Load histories written by :meth:`write` into the changed users."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = xr.open_zarr(path, zarr_format=3, consolidated=False).load()
            indptr = ds["indptr"].values
            item_ids = ds["item"].values
            weights = ds["weight"].values.astype(np.float32)
            users = ds["user"].values.tolist()
        except Exception as e:  # zarr/xarray raise many types for broken stores
            raise dmf.StoreError(f"{path} cannot be read as served histories: {e}") from e
        codes = items.get_indexer(pd.Index(item_ids)).astype(np.int64)
        if (codes < 0).any():
            raise dmf.StoreError(
                f"{path} has {int((codes < 0).sum())} item(s) the model does not know "
                f"(first: {_first(item_ids[codes < 0])}): the state belongs to another model"
            )
        for j, user in enumerate(users):
            a, b = indptr[j], indptr[j + 1]
            self.changed[user] = (codes[a:b], weights[a:b])


def read_interactions(path: str, users: pd.Index, items: pd.Index) -> Histories:
    """Training interactions from a CSV or Parquet file with ``user``, ``item`` [, ``rating``].

    Every user and item must be one the model knows, and each pair must
    appear once; a :class:`dmf.RatingsError` names the first offending rows.
    """
    if not os.path.exists(path):
        raise dmf.RatingsError(f"interactions file {path} does not exist")
    if path.endswith((".parquet", ".pq")):
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path)
    missing = [c for c in ("user", "item") if c not in frame.columns]
    if missing:
        raise dmf.RatingsError(
            f"interactions {path} lacks column(s) {missing}; it has {list(frame.columns)}"
        )
    if "rating" in frame.columns:
        weights = frame["rating"].to_numpy(dtype=np.float32)
    else:
        weights = np.ones(len(frame), np.float32)
    u = users.get_indexer(pd.Index(frame["user"].to_numpy())).astype(np.int64)
    i = items.get_indexer(pd.Index(frame["item"].to_numpy())).astype(np.int64)
    bad = np.flatnonzero((u < 0) | (i < 0) | ~np.isfinite(weights))
    if len(bad):
        raise dmf.RatingsError(
            f"interactions {path} has {len(bad)} row(s) with a user or item the model does "
            f"not know or a non-finite rating (rows {_first(bad)})"
        )
    order = np.lexsort((i, u))
    u, i, weights = u[order], i[order], weights[order]
    dup = np.flatnonzero((np.diff(u) == 0) & (np.diff(i) == 0))
    if len(dup):
        raise dmf.RatingsError(
            f"interactions {path} repeats {len(dup)} (user, item) pair(s) "
            f"(rows {_first(order[dup + 1])}); merge them first"
        )
    indptr = np.zeros(len(users) + 1, np.int64)
    np.cumsum(np.bincount(u, minlength=len(users)), out=indptr[1:])
    return Histories(len(users), indptr, i, weights)
