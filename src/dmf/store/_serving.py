"""What serving needs beside the factors: the training interactions and item titles.

Two optional groups of a model store, plain Zarr arrays aligned with the
model's own user and item codes::

    interactions/indptr  (n_rows + 1,)  int64    CSR over user codes (n_rows <= users)
    interactions/item    (nnz,)         int32    item codes, sorted within each row
    interactions/weight  (nnz,)         float32  the training values (ratings or counts)
    titles/title         (items,)       str      "" where an item has no title

They are written before the store's completion mark, so a store is complete
with them or not at all; stores written without them load as before and
:func:`read_interactions` / :func:`read_titles` then return None.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask
import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec

from dmf._errors import ParameterError, RatingsError, StoreError
from dmf.data._ratings import Ratings
from dmf.engine._compute import active_client
from dmf.store._location import Location, open_group, resolve

__all__ = ["Interactions", "read_interactions", "read_titles", "write_extras"]

#: ``(indptr, item codes, weights)``: a CSR of interactions by the model's user codes.
Interactions = tuple[np.ndarray, np.ndarray, np.ndarray]

#: Interactions per Zarr chunk.
_CHUNK = 1 << 22
_FAST = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")


def _block_nnz(csr: Any) -> int:
    return len(csr.indices)


def _block_part(csr: Any, what: str, offset: int) -> np.ndarray:
    if what == "indptr":
        return np.asarray(csr.indptr[1:], np.int64) + offset
    if what == "item":
        return np.asarray(csr.indices, np.int32)
    return np.asarray(csr.data, np.float32)


def _lazy_interactions(ratings: Ratings) -> Interactions:
    """The CSR as Dask arrays over the row blocks: the workers holding them write them."""
    import dask.array as da

    csrs = ratings.row_csr()
    nnz = [int(n) for n in dask.compute(*[dask.delayed(_block_nnz)(c) for c in csrs])]
    offsets = np.concatenate([[0], np.cumsum(nnz)]).astype(np.int64)
    rows = np.diff(np.asarray(ratings.row_edges, np.int64))

    def part(what: str, c: Any, j: int, dtype: Any) -> Any:
        n = int(rows[j]) if what == "indptr" else nnz[j]
        return da.from_delayed(dask.delayed(_block_part)(c, what, int(offsets[j])), (n,), dtype)

    indptr = da.concatenate(
        [da.zeros(1, np.int64, chunks=1)]
        + [part("indptr", c, j, np.int64) for j, c in enumerate(csrs)]
    )
    items = da.concatenate([part("item", c, j, np.int32) for j, c in enumerate(csrs)])
    weights = da.concatenate([part("weight", c, j, np.float32) for j, c in enumerate(csrs)])
    return indptr, items, weights


def interactions_of(model: Any, ratings: Ratings) -> Interactions:
    """The CSR of ``ratings`` by ``model``'s user and item codes (every id must be known).

    With the model's own id maps and a ``distributed.Client``, as Dask arrays
    over the row blocks (nothing gathered here); otherwise NumPy arrays.
    """
    same = ratings.users.equals(model.users_) and ratings.items.equals(model.items_)
    if same and active_client() is not None:
        return _lazy_interactions(ratings)
    blocks = dask.compute(*ratings.row_csr())
    lengths = np.concatenate([np.diff(b.indptr) for b in blocks] or [np.zeros(0, np.int64)])
    users = np.repeat(np.arange(ratings.n_users, dtype=np.int64), lengths)
    items = np.concatenate([np.asarray(b.indices, np.int64) for b in blocks] or [[]])
    weights = np.concatenate([np.asarray(b.data, np.float32) for b in blocks] or [[]])
    if not same:
        u_map = model.users_.get_indexer(ratings.users).astype(np.int64)
        i_map = model.items_.get_indexer(ratings.items).astype(np.int64)
        users, items = u_map[users], i_map[items.astype(np.int64)]
        bad = np.flatnonzero((users < 0) | (items < 0))
        if len(bad):
            raise RatingsError(
                f"interactions: {len(bad)} rating(s) name a user or item the model does not "
                f"know (first rows {bad[:5].tolist()}); pass the ratings the model was fitted on"
            )
        order = np.lexsort((items, users))
        users, items, weights = users[order], items[order], weights[order]
    indptr = np.zeros(len(model.users_) + 1, np.int64)
    np.cumsum(np.bincount(users, minlength=len(model.users_)), out=indptr[1:])
    return indptr, items.astype(np.int32), weights.astype(np.float32)


def titles_of(model: Any, titles: Any) -> np.ndarray:
    """Titles aligned with ``model.items_`` ("" where missing) from a mapping or Series."""
    if isinstance(titles, dict):
        titles = pd.Series(titles, dtype=object)
    if not isinstance(titles, pd.Series):
        raise ParameterError(
            f"titles must be a pandas Series or dict of item id -> title, got "
            f"{type(titles).__name__}"
        )
    codes = model.items_.get_indexer(titles.index)
    out = np.full(len(model.items_), "", dtype=object)
    keep = codes >= 0
    out[codes[keep]] = titles.to_numpy(dtype=object)[keep].astype(str)
    return out


def write_extras(
    loc: Location, interactions: Interactions | None, titles: np.ndarray | None
) -> None:
    """Write the optional groups into the (not yet complete) store at ``loc``."""
    if interactions is None and titles is None:
        return
    root = open_group(loc, mode="r+")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: the string dtype is not in the v3 spec yet
        if interactions is not None:
            g = root.create_group("interactions", overwrite=True)
            lazy = []
            names, dtypes = ("indptr", "item", "weight"), (np.int64, np.int32, np.float32)
            # read whole at every server start: a codec that decodes fast beats a smaller one
            fast = {"chunks": (_CHUNK,), "compressors": _FAST}
            # memory:// lives in this process: the workers cannot write there
            here = "memory" in str(loc.fs.protocol)
            for name, a, dtype in zip(names, interactions, dtypes, strict=True):
                if hasattr(a, "dask") and here:
                    a = a.compute()
                if hasattr(a, "dask"):  # written by the workers that hold the blocks
                    arr = g.create_array(name, shape=a.shape, dtype=dtype, **fast)
                    lazy.append((a.astype(dtype).rechunk(_CHUNK), arr))
                else:
                    g.create_array(name, data=np.asarray(a, dtype), **fast)
            if lazy:
                import dask.array as da

                da.store([a for a, _ in lazy], [z for _, z in lazy], lock=False)
        if titles is not None:
            g = root.create_group("titles", overwrite=True)
            a = g.create_array("title", shape=(len(titles),), dtype=str, chunks=(_CHUNK,))
            a[:] = np.asarray(titles, dtype=object)


def _group(path: Any, name: str, storage_options: dict[str, Any]) -> zarr.Group | None:
    loc = resolve(path, storage_options)
    root = open_group(loc, mode="r")
    if root.attrs.get("dmf_complete") is not True:
        raise StoreError(f"{loc.url} is incomplete (no completion mark): save the model again")
    try:
        return root[name] if name in root else None
    except KeyError:
        return None


def read_interactions(path: Any, **storage_options: Any) -> Interactions | None:
    """The training interactions saved in the store at ``path``, or None if it has none.

    Returns ``(indptr, item codes, weights)``: a CSR over the model's user
    codes (``indptr`` may cover fewer rows than the model has users: users
    added later have none) with the model's item codes.

    Examples
    --------
    >>> import dmf
    >>> model = dmf.Baseline().fit(dmf.testing.random_ratings(n_users=5, n_items=4, seed=0))
    >>> indptr, items, weights = dmf.store.read_interactions(model.save("memory://doc/i.zarr"))
    >>> int(indptr[-1]) == model.train_info_["nnz"], len(indptr) == len(model.users_) + 1
    (True, True)
    """
    g = _group(path, "interactions", storage_options)
    if g is None:
        return None
    try:
        indptr = np.asarray(g["indptr"][:], np.int64)
        items = np.asarray(g["item"][:], np.int32)
        weights = np.asarray(g["weight"][:], np.float32)
    except Exception as e:  # zarr raises many types for broken stores
        raise StoreError(f"{path}: the interactions group cannot be read: {e}") from e
    ok = (
        len(indptr) >= 1
        and indptr[0] == 0
        and (np.diff(indptr) >= 0).all()
        and indptr[-1] == len(items) == len(weights)
    )
    if not ok:
        raise StoreError(f"{path}: the interactions group is damaged (indptr disagrees)")
    return indptr, items, weights


def read_titles(path: Any, **storage_options: Any) -> np.ndarray | None:
    """Item titles saved in the store at ``path`` (by item code, "" if none), or None.

    Examples
    --------
    >>> import dmf, pandas as pd
    >>> from dmf.store import read_titles
    >>> train = dmf.testing.random_ratings(n_users=5, n_items=3, seed=0)
    >>> model = dmf.Baseline().fit(train)
    >>> titles = pd.Series(["first"], index=model.items_[:1])
    >>> url = model.save("memory://doc/titles.zarr", overwrite=True, titles=titles)
    >>> read_titles(url).tolist()
    ['first', '', '']
    """
    g = _group(path, "titles", storage_options)
    if g is None:
        return None
    try:
        return np.asarray(g["title"][:], dtype=object)
    except Exception as e:  # zarr raises many types for broken stores
        raise StoreError(f"{path}: the titles group cannot be read: {e}") from e
