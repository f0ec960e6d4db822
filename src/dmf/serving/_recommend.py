"""Top-k recommendation and item similarity for every dmf model.

- :func:`recommend`: a few users, in this process with NumPy (no Dask graph
  once the exclusion lists are cached): one block product, a numba top-k;
- :func:`recommend_all`: every user seen in training, one ``recommend-block``
  task per user block, as a dask DataFrame;
- :func:`similar_items`: cosine similarity of item factors.

Ranking follows :mod:`dmf.kernels._ranking`: highest score first, equal scores
by the lower item code; items never seen in training are never recommended and
a user's items in ``exclude`` are masked. What can be precomputed (candidate
mask, normalised item factors, the exclusion lists of the last ``exclude``
Ratings) is cached on the model, dropped when the model is pickled or refitted.
"""

from __future__ import annotations

import itertools
from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf._errors import ParameterError, UnknownIdError, check_choice, check_int, first_rows
from dmf.core._lazy import lazy_model, user_slices
from dmf.core._protocol import _ids
from dmf.data._blocks import balanced_edges
from dmf.data._exclusions import empty_csr, exclusion_blocks, take_rows
from dmf.data._ratings import Ratings
from dmf.engine._compute import key, n_threads
from dmf.kernels._ranking import topk_rows
from dmf.serving._candidates import (
    _cache,
    _exclusion_all,
    candidate_mask,
    check_k,
    exclusion_rows,
)
from dmf.serving._users import similar

__all__ = ["recommend", "recommend_all", "similar_items"]

#: Cold-start policies of :func:`recommend` for users unseen in training.
RECOMMEND_COLD_START = ("baseline", "raise", "skip")

#: Scores computed at once: rows x items cells (64 MB float32).
_CHUNK_CELLS = 1 << 24

_CACHE = "_rec_cache"


# -------------------------------------------------------------------- cache
def _cand_ok(model: Any) -> np.ndarray:
    cache = _cache(model)
    if "cand_ok" not in cache:
        cache["cand_ok"] = np.ascontiguousarray(np.asarray(model.item_counts_) > 0)
        cache["n_cand"] = int(cache["cand_ok"].sum())
    return cache["cand_ok"]


def _values(model: Any, name: str) -> np.ndarray:
    """The id index as a NumPy array (cached): ``values[codes]`` beats ``Index.take``."""
    return _cache(model).setdefault(name, getattr(model, name).to_numpy())


def _few_codes(index: pd.Index, ids: np.ndarray, limit: int = 64) -> np.ndarray | None:
    """Codes of a few plain ids by hash lookups, or None to take the general path.

    ``Index.get_indexer`` on an object array costs tens of milliseconds on a
    large integer index (it converts the index); ``get_loc`` per id costs a
    microsecond. Only ids of the index's own kind (int ids on an integer
    index, str ids on a string index) take this path, so no id matches here
    that would not match by ``get_indexer``.
    """
    if len(ids) > limit:
        return None
    kind = index.dtype.kind
    if kind in "iu":
        ok = all(
            isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)) for x in ids
        )
    elif pd.api.types.is_string_dtype(index.dtype):
        ok = all(isinstance(x, str) for x in ids)
    else:
        return None
    if not ok:
        return None
    out = np.empty(len(ids), dtype=np.int64)
    for n, x in enumerate(ids):
        try:
            c = index.get_loc(x)
        except KeyError:
            c = -1
        out[n] = c if isinstance(c, (int, np.integer)) else -1
    return out


def _check_k(model: Any, k: Any, what: str = "catalogue") -> int:
    k = check_int("k", k, 1)
    _cand_ok(model)
    n_cand = _cache(model)["n_cand"]
    if k > n_cand:
        raise ParameterError(
            f"k={k} is larger than the {what}: the model knows {n_cand} item(s) seen in training"
        )
    return k


def _check_exclude(exclude: Any) -> Ratings | None:
    if exclude is None or isinstance(exclude, Ratings):
        return exclude
    raise ParameterError(
        "exclude must be a dmf.Ratings (e.g. the training set) or None, "
        f"got {type(exclude).__name__}"
    )


def _topk_block(
    model: Any,
    codes: np.ndarray,
    k: int,
    ex_ptr: np.ndarray,
    ex_idx: np.ndarray,
    cold: np.ndarray | None = None,
    cand_ok: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k items, scores and counts of users ``codes`` (exclusion CSR row r = user r)."""
    cand_ok = _cand_ok(model) if cand_ok is None else cand_ok
    n = len(codes)
    n_items = len(model.items_)
    out_items = np.empty((n, k), dtype=np.int64)
    out_scores = np.empty((n, k), dtype=np.float32)
    out_n = np.empty(n, dtype=np.int64)
    step = max(1, _CHUNK_CELLS // max(1, n_items))
    for c0 in range(0, n, step):
        c1 = min(n, c0 + step)
        u = codes[c0:c1]
        warm = u >= 0 if cold is None else ~cold[c0:c1]
        scores = model._score_users(np.where(warm, u, 0))
        if not warm.all():
            # users unseen in training: the baseline fallback, mu + b_i
            scores[~warm] = (model.global_mean_ + model.item_bias_).astype(np.float32)
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        topk_rows(
            scores,
            c0,
            k,
            cand_ok,
            ex_ptr,
            ex_idx,
            out_items[c0:c1],
            out_scores[c0:c1],
            out_n[c0:c1],
        )
    return out_items, out_scores, out_n


def _flatten(
    owners: np.ndarray, items: np.ndarray, scores: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, ...]:
    k = items.shape[1]
    mask = np.arange(k)[None, :] < counts[:, None]
    rows = np.nonzero(mask)
    return (
        np.repeat(owners, counts),
        items[mask],
        scores[mask],
        (rows[1] + 1).astype(np.int32),
    )


# ---------------------------------------------------------------- recommend
def recommend(
    model: Any,
    users: Any,
    k: int = 10,
    exclude: Any = None,
    *,
    items: Any = None,
    on_unknown: str = "raise",
    cold_start: str = "baseline",
    min_support: int = 1,
) -> pd.DataFrame:
    """Top-k items for some users, in this process (see :meth:`dmf.Recommender.recommend`)."""
    model._check_fitted()
    k = check_int("k", k, 1)
    min_support = check_int("min_support", min_support, 1)
    check_choice("cold_start", cold_start, RECOMMEND_COLD_START)
    supported = _cand_ok(model)
    if min_support > 1:  # a rating model's top items are often ones rated once or twice
        supported = supported & (model.item_counts_ >= min_support)
    cand = candidate_mask(model, supported, items, on_unknown)
    what = "catalogue" if items is None else "items= list"
    if min_support > 1:
        what += f" with min_support={min_support}"
    check_k(k, int(cand.sum()), what)
    ids = _ids(users)
    if len(ids) == 0:
        raise ParameterError("users is empty: pass at least one user id")
    codes = _few_codes(model.users_, ids)
    if codes is None:
        codes = model._user_codes(ids)
    else:
        known = codes >= 0
        codes[known & (model.user_counts_[np.where(known, codes, 0)] == 0)] = -1
    cold = codes < 0
    if cold.any():
        if cold_start == "raise":
            bad = pd.unique(pd.Series(ids[cold], dtype=object))
            raise UnknownIdError(
                f"{len(bad)} user id(s) unseen in training (first: {first_rows(bad)}); "
                "use cold_start='baseline' (rank by item bias) or 'skip'"
            )
        if cold_start == "skip":
            ids, codes, cold = ids[~cold], codes[~cold], cold[~cold]
    excl = exclusion_rows(model, ids, exclude, lambda r, i: _exclusion_of(model, r, i))
    ex_ptr, ex_idx = empty_csr(len(codes)) if excl is None else excl
    top, scores, counts = _topk_block(model, codes, k, ex_ptr, ex_idx, cold, cand)
    if not cold.any():  # typed ids straight from the model's index
        ids = _values(model, "users_")[codes]
    owners, it, sc, rk = _flatten(ids, top, scores, counts)
    if owners.dtype == object and len(owners):
        owners = pd.Index(list(owners)).to_numpy()
    return _frame(owners, _values(model, "items_")[it], sc, rk)


def _exclusion_of(model: Any, exclude: Ratings, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the cached exclusion CSR of ``exclude`` for users ``ids`` (absent: none)."""
    ptr, idx = _exclusion_all(model, exclude)
    ex_rows = _few_codes(exclude.users, ids)
    if ex_rows is None:
        ex_rows = exclude.user_codes(ids)
    return take_rows(ptr, idx, ex_rows)


_COLUMNS: dict[str, pd.Index] = {}


def _frame(
    owners: np.ndarray, items: np.ndarray, scores: np.ndarray, ranks: np.ndarray
) -> pd.DataFrame:
    """``DataFrame(user, item, score, rank)``, built without re-creating its column index.

    Building the column labels is most of ``pd.DataFrame(dict)``'s cost for a
    few rows (~1 ms); the single-user path has a 2 ms budget.
    """
    arrays = [owners, items, scores, ranks]
    cols = _COLUMNS.get("user")
    if cols is None:
        cols = _COLUMNS.setdefault(
            "user", pd.DataFrame({"user": [], "item": [], "score": [], "rank": []}).columns
        )
    try:
        return pd.DataFrame._from_arrays(arrays, columns=cols, index=pd.RangeIndex(len(owners)))
    except (AttributeError, TypeError):  # pragma: no cover - a pandas without it
        return pd.DataFrame(dict(zip(cols, arrays, strict=True)))


def _recommend_block(
    model: Any,
    start: int,
    stop: int,
    excl: Any,
    k: int,
    meta: pd.DataFrame,
    cand: np.ndarray | None = None,
) -> pd.DataFrame:
    codes = np.arange(start, stop, dtype=np.int64)
    known = np.asarray(model.user_counts_[start:stop]) > 0
    if excl is None:
        ex_ptr, ex_idx = empty_csr(stop - start)
    else:
        ex_ptr, ex_idx = excl
    rows = np.nonzero(known)[0]
    ex_ptr, ex_idx = take_rows(ex_ptr, ex_idx, rows)
    items, scores, counts = _topk_block(model, codes[rows], k, ex_ptr, ex_idx, None, cand)
    owners, it, sc, rk = _flatten(codes[rows], items, scores, counts)
    if len(owners) == 0:
        return meta
    return pd.DataFrame(
        {
            "user": model.users_.take(owners),
            "item": model.items_.take(it),
            "score": sc,
            "rank": rk,
        }
    )


def recommend_all(
    model: Any,
    k: int = 10,
    exclude: Ratings | None = None,
    *,
    items: Any = None,
    on_unknown: str = "raise",
) -> Any:
    """Top-k items of every user seen in training (see :meth:`dmf.FittedModel.recommend_all`)."""
    import dask.dataframe as dd

    model._check_fitted()
    k = check_int("k", k, 1)
    cand = None
    if items is not None:
        cand = candidate_mask(model, _cand_ok(model), items, on_unknown)
        check_k(k, int(cand.sum()), "items= list")
    else:
        k = _check_k(model, k)
    exclude = _check_exclude(exclude)
    edges = getattr(model, "row_edges_", None)
    if edges is None:  # a model without its training blocks: balance users by count
        edges = balanced_edges(np.asarray(model.user_counts_), 2 * n_threads())
    edges = np.asarray(edges, dtype=np.int64)
    meta = pd.DataFrame(
        {
            "user": pd.Series(model.users_[:0]),
            "item": pd.Series(model.items_[:0]),
            "score": pd.Series([], dtype=np.float32),
            "rank": pd.Series([], dtype=np.int32),
        }
    )
    excl = exclusion_blocks(exclude, model, model.users_, edges)
    if lazy_model(model):  # each task gets its users' rows from the workers or the store
        ranges = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
        views = user_slices(model, ranges, "recommend-model")
        parts = [
            dask.delayed(_recommend_block)(
                v,
                0,
                b - a,
                ex,
                k,
                meta,
                cand,
                dask_key_name=key("recommend-block", v.key, getattr(ex, "key", None), k, cand),
            )
            for (a, b), v, ex in zip(ranges, views, excl, strict=True)
        ]
        return dd.from_delayed(parts, meta=meta, verify_meta=False)
    d_model = dask.delayed(model, pure=True)
    parts = [
        dask.delayed(_recommend_block)(
            d_model,
            int(a),
            int(b),
            ex,
            k,
            meta,
            cand,
            dask_key_name=key(
                "recommend-block", d_model.key, a, b, getattr(ex, "key", None), k, cand
            ),
        )
        for a, b, ex in zip(edges[:-1], edges[1:], excl, strict=True)
    ]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)


# ------------------------------------------------------------ similar items
def similar_items(model: Any, items: Any, k: int = 10) -> pd.DataFrame:
    """Most similar items by cosine of item factors (see :meth:`dmf.FittedModel.similar_items`)."""
    return similar(model, items, k, "item")
