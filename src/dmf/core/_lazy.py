"""Fitted arrays that live elsewhere: Dask arrays on the workers or in a Zarr store.

A model's factors (and biases) are NumPy arrays in this process, or Dask
arrays whose chunks are row blocks persisted on the workers of a
``distributed.Client`` or read from a lazily loaded store. Scoring code never
materialises a whole lazy user-side array in the client:

- :func:`take` fetches just the rows a call needs (one small graph);
- :func:`item_side` reads the item arrays once (they are the small side) and
  caches them on the model;
- :func:`user_slices` hands block tasks a model restricted to a range of users,
  built on the worker from the slices of the lazy arrays that range covers.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import dask
import numpy as np

__all__ = [
    "USER_ARRAYS",
    "is_lazy",
    "item_side",
    "lazy_model",
    "register_store",
    "take",
    "user_slices",
]

#: Fitted attributes with one row per user (sliced by :func:`user_slices`).
USER_ARRAYS = ("user_factors_", "user_bias_", "user_counts_")
_ITEM_ARRAYS = ("item_factors_", "item_bias_")


def is_lazy(a: Any) -> bool:
    """Whether ``a`` is a Dask array (on the workers or backed by a store)."""
    return hasattr(a, "dask") and hasattr(a, "chunks") and hasattr(a, "compute")


def lazy_model(model: Any) -> bool:
    """Whether any of ``model``'s fitted arrays is a Dask array."""
    return any(is_lazy(getattr(model, a, None)) for a in (*USER_ARRAYS, *_ITEM_ARRAYS))


#: Zarr arrays behind lazily loaded Dask arrays, by Dask name (the most recent few):
#: a few rows are read from the store directly, without a graph.
_STORED: OrderedDict[str, Any] = OrderedDict()
_N_STORED = 64


def register_store(a: Any, stored: Any) -> None:
    """Note that Dask array ``a`` reads Zarr array ``stored`` (see :func:`take`)."""
    _STORED[a.name] = stored
    _STORED.move_to_end(a.name)
    while len(_STORED) > _N_STORED:
        _STORED.popitem(last=False)


def take(arrays: list[Any], idx: np.ndarray) -> list[np.ndarray]:
    """``[a[idx] for a in arrays]`` as NumPy, computing only those rows of lazy arrays.

    Rows of a store-backed array are read straight from its Zarr chunks (one
    small read per chunk touched); rows on the workers come in one small graph.
    """
    idx = np.asarray(idx, dtype=np.int64)
    out: list[Any] = [None if a is None or is_lazy(a) else a[idx] for a in arrays]
    lazy = [j for j, a in enumerate(arrays) if is_lazy(a)]
    if not lazy:
        return out
    uniq, inv = np.unique(idx, return_inverse=True)
    inv = inv.reshape(idx.shape)
    graph = []
    for j in lazy:
        z = _STORED.get(arrays[j].name)
        if z is None:
            graph.append(j)
        else:
            rows = z.get_orthogonal_selection((uniq, *([slice(None)] * (z.ndim - 1))))
            out[j] = np.asarray(rows)[inv]
    if graph:
        got = dask.compute(*[arrays[j][uniq] for j in graph])
        for j, g in zip(graph, got, strict=True):
            out[j] = np.asarray(g)[inv]
    return out


def item_side(model: Any) -> tuple[Any, Any]:
    """``(item_factors, item_bias)`` as NumPy, read once per lazy model and cached."""
    f, b = getattr(model, "item_factors_", None), getattr(model, "item_bias_", None)
    if not (is_lazy(f) or is_lazy(b)):
        return f, b

    def load() -> tuple[Any, Any]:
        lazy = [a for a in (f, b) if is_lazy(a)]
        got = iter(dask.compute(*lazy))
        return tuple(np.asarray(next(got)) if is_lazy(a) else a for a in (f, b))

    return model._cached("item_side", load)


def user_slices(model: Any, ranges: list[tuple[int, int]], prefix: str) -> list[Any]:
    """One lazy model per user range, each holding only its users (codes shifted by ``lo``).

    The item side is computed once on a worker and shared by every task; the
    user side arrives as the slices of the row blocks that hold those users,
    so no task graph carries a factor matrix and none is gathered here.
    """
    from dmf.engine._compute import key

    skeleton = copy.copy(model)
    skeleton.__dict__.pop("_rec_cache", None)
    for name in (*USER_ARRAYS, *_ITEM_ARRAYS):
        if hasattr(skeleton, name):
            setattr(skeleton, name, None)
    users = model.users_
    skeleton.users_ = None
    d_skel = dask.delayed(skeleton, pure=True)
    items = {
        n: (
            dask.delayed(getattr(model, n), pure=True)
            if not is_lazy(getattr(model, n, None))
            else getattr(model, n)
        )
        for n in _ITEM_ARRAYS
        if getattr(model, n, None) is not None
    }
    d_items = dask.delayed(dict)(**items) if items else {}
    out = []
    for lo, hi in ranges:
        arrays: dict[str, Any] = {}
        for n in USER_ARRAYS:
            a = getattr(model, n, None)
            arrays[n] = None if a is None else a[lo:hi]
        out.append(
            dask.delayed(_with_users)(
                d_skel,
                users[lo:hi],
                arrays,
                d_items,
                dask_key_name=key(prefix, d_skel.key, lo, hi, arrays, getattr(d_items, "key", 0)),
            )
        )
    return out


def _with_users(skeleton: Any, users: Any, arrays: dict[str, Any], items: dict[str, Any]) -> Any:
    """In a task: ``skeleton`` holding the given users' arrays and the item side."""
    view = copy.copy(skeleton)
    view.__dict__.pop("_rec_cache", None)
    view.users_ = users
    for name, value in {**arrays, **items}.items():
        setattr(view, name, None if value is None else np.asarray(value))
    return view
