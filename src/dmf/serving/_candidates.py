"""What a recommendation may return: candidate items (``items=``) and exclusions (``exclude=``).

- :func:`candidate_mask`: the items seen in training, restricted to an ``items=``
  list; ids unseen in training are an error naming the count and the first
  ones, or left out with ``on_unknown="skip"``;
- :func:`exclusion_rows`: the items to mask for each requested user, from any of
  the accepted ``exclude=`` forms: a :class:`dmf.Ratings`, a DataFrame with
  ``user`` and ``item`` columns, a mapping ``user -> items``, or (for one user)
  a list of item ids. Users are matched by original id; excluded items the model
  never saw are never candidates anyway, so they change nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf._errors import ParameterError, UnknownIdError, check_choice, first_rows
from dmf.core._protocol import _ids
from dmf.data._exclusions import _csr, exclusion_blocks, take_rows
from dmf.data._ratings import Ratings

__all__ = ["ON_UNKNOWN", "candidate_mask", "check_k", "exclusion_rows", "known_codes"]

#: Policies for ids a recommendation call names that the model never saw.
ON_UNKNOWN = ("raise", "skip")


# ----------------------------------------------------- per-model cache
def _cache(model: Any) -> dict[str, Any]:
    """Per-model cache (:meth:`dmf.FittedModel._cached`), reset when fitted arrays change."""
    model._cached("_", dict)
    return model.__dict__["_rec_cache"]


def _exclusion_all(model: Any, exclude: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Exclusion CSR over ``exclude``'s own user codes, computed once and cached."""
    cache = _cache(model)
    hit = cache.get("exclude")
    if hit is not None and hit[0]() is exclude:
        return hit[1], hit[2]
    parts = dask.compute(exclusion_blocks(exclude, model, exclude.users, exclude.row_edges))[0]
    lengths = [np.diff(p[0]) for p in parts]
    indptr = np.zeros(exclude.n_users + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=indptr[1:])
    indices = np.concatenate([p[1] for p in parts]).astype(np.int32)
    cache["exclude"] = (weakref.ref(exclude), indptr, indices)
    return indptr, indices


def known_codes(
    lookup: Callable[[Any], np.ndarray], ids: Any, what: str, on_unknown: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, codes)`` of ``ids`` seen in training; unknown ones raise or are skipped."""
    check_choice("on_unknown", on_unknown, ON_UNKNOWN)
    ids = _ids(ids)
    codes = lookup(ids)
    bad = codes < 0
    if bad.any():
        if on_unknown == "raise":
            first = pd.unique(pd.Series(ids[bad], dtype=object))
            raise UnknownIdError(
                f"{len(first)} id(s) in {what} unseen in training, of {len(ids)} given "
                f"(first: {first_rows(first)}); on_unknown='skip' leaves them out"
            )
        ids, codes = ids[~bad], codes[~bad]
    return ids, codes


def candidate_mask(
    model: Any, base: np.ndarray, items: Any, on_unknown: str = "raise"
) -> np.ndarray:
    """``base`` (items seen in training) restricted to ``items`` (None: all of them)."""
    if items is None:
        return base
    _, codes = known_codes(model._item_codes, items, "items=", on_unknown)
    if len(codes) == 0:
        raise ParameterError("items= names no item seen in training: nothing to rank")
    mask = np.zeros_like(base)
    mask[codes] = True
    return np.ascontiguousarray(mask & base)


def check_k(k: int, n_candidates: int, what: str) -> int:
    """``k`` (already an int >= 1) must not exceed the candidates."""
    if k > n_candidates:
        raise ParameterError(
            f"k={k} is larger than the {what}: {n_candidates} candidate(s); "
            f"ask for k <= {n_candidates}"
        )
    return k


def _from_pairs(
    model: Any, ids: np.ndarray, users: Any, items: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Exclusion CSR for the requested ``ids`` from (user, item) pairs of original ids."""
    uniq = pd.Index(pd.unique(pd.Series(ids, dtype=object))).infer_objects()
    rows = uniq.get_indexer(pd.Index(_ids(users)).infer_objects()).astype(np.int64)
    cols = model._item_codes(items)
    keep = (rows >= 0) & (cols >= 0)
    ptr, idx = _csr(rows[keep], cols[keep], len(uniq))
    return take_rows(ptr, idx, uniq.get_indexer(pd.Index(ids).infer_objects()))


def exclusion_rows(
    model: Any,
    ids: np.ndarray,
    exclude: Any,
    from_ratings: Callable[[Ratings, np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray] | None:
    """Exclusion CSR ``(indptr, indices)``, row r for user ``ids[r]``; None masks nothing.

    ``from_ratings`` handles the :class:`dmf.Ratings` form (cached per model).
    """
    if exclude is None:
        return None
    if isinstance(exclude, Ratings):
        return from_ratings(exclude, ids)
    if isinstance(exclude, pd.DataFrame):
        missing = [c for c in ("user", "item") if c not in exclude.columns]
        if missing:
            raise ParameterError(
                f"exclude DataFrame lacks column(s) {missing}; it has {list(exclude.columns)}"
            )
        return _from_pairs(model, ids, exclude["user"].to_numpy(), exclude["item"].to_numpy())
    if isinstance(exclude, Mapping):
        users, items = [], []
        for user, its in exclude.items():
            its = _ids(its)
            users.extend([user] * len(its))
            items.extend(its)
        return _from_pairs(model, ids, _ids(users), _ids(items))
    if isinstance(exclude, (list, tuple, np.ndarray, pd.Index, pd.Series)):
        if len(ids) != 1:
            raise ParameterError(
                f"exclude as a list of item ids is for one user; {len(ids)} users were "
                "given: pass a mapping {user: [items]} or a DataFrame with user, item columns"
            )
        codes = model._item_codes(_ids(exclude))
        codes = codes[codes >= 0].astype(np.int32)
        return np.array([0, len(codes)], dtype=np.int64), codes
    raise ParameterError(
        "exclude must be a dmf.Ratings, a DataFrame with user and item columns, a mapping "
        f"user -> items, a list of item ids (one user) or None; got {type(exclude).__name__}"
    )
