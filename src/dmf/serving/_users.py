"""Answers about users: similar users, and the top users for items (items -> users).

- :func:`similar`: cosine similarity of user (or item) factors, the neighbours of
  each given id, never the id itself;
- :func:`recommend_users`: for items, the users who would score them highest
  (Spark's ``recommendForAllItems``), one ``recommend-users-block`` task per block
  of items, as a dask DataFrame; each task scores its items against every user
  seen in training, masks the users who already have the item in ``exclude``
  and keeps the top k, so no ``n_items x n_users`` array exists.

Ranking as everywhere in dmf: highest score first, equal scores by the lower code.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf._errors import ParameterError, UnknownIdError, check_int, first_rows
from dmf.core._protocol import FittedModel, _ids
from dmf.data._exclusions import _csr, empty_csr, take_rows
from dmf.data._ratings import Ratings
from dmf.engine._compute import key, n_threads
from dmf.kernels._ranking import topk_rows
from dmf.serving._candidates import _cache, _exclusion_all, check_k, known_codes

__all__ = ["recommend_users", "similar"]

#: Scores computed at once: rows x users cells (64 MB float32).
_CHUNK_CELLS = 1 << 24


# ------------------------------------------------------------------ similar
def similar(model: Any, ids: Any, k: int, side: str) -> pd.DataFrame:
    """The ``k`` ids most similar to each of ``ids`` by cosine of ``side`` factors."""
    model._check_fitted()
    factors = getattr(model, f"{side}_factors_", None)
    name = f"similar_{side}s"
    if factors is None:
        raise ParameterError(
            f"{name} needs {side} factors: this {type(model).__name__} is a bias-only model "
            f"({side}_factors_ is None); fit a factor model such as dmf.ALS or dmf.SGD"
        )
    k = check_int("k", k, 1)
    counts = np.asarray(getattr(model, f"{side}_counts_"))
    cand_ok = np.ascontiguousarray(counts > 0)
    n_other = int(cand_ok.sum()) - 1
    if k > n_other:
        raise ParameterError(
            f"k={k} is larger than the catalogue: each {side} has {n_other} other {side}(s) "
            "seen in training"
        )
    ids = _ids(ids)
    if len(ids) == 0:
        raise ParameterError(f"{side}s is empty: pass at least one {side} id")
    lookup = model._item_codes if side == "item" else model._user_codes
    codes = lookup(ids)
    if (codes < 0).any():
        bad = pd.unique(pd.Series(ids[codes < 0], dtype=object))
        raise UnknownIdError(
            f"{len(bad)} {side} id(s) unseen in training (first: {first_rows(bad)}): "
            "they have no factors to compare"
        )
    cache = _cache(model)
    if f"unit_{side}s" not in cache:
        f = np.asarray(factors, dtype=np.float32)
        norms = np.linalg.norm(f, axis=1, keepdims=True)
        cache[f"unit_{side}s"] = np.ascontiguousarray(
            np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
        )
    unit = cache[f"unit_{side}s"]
    sims = np.ascontiguousarray(unit[codes] @ unit.T, dtype=np.float32)
    ex_ptr = np.arange(len(codes) + 1, dtype=np.int64)  # mask each id itself
    ex_idx = codes.astype(np.int32)
    out = np.empty((len(codes), k), dtype=np.int64)
    out_scores = np.empty((len(codes), k), dtype=np.float32)
    out_n = np.empty(len(codes), dtype=np.int64)
    topk_rows(sims, 0, k, cand_ok, ex_ptr, ex_idx, out, out_scores, out_n)
    mask = np.arange(k)[None, :] < out_n[:, None]
    index = model.items_ if side == "item" else model.users_
    return pd.DataFrame(
        {
            side: np.repeat(ids, out_n),
            f"similar_{side}": index.take(out[mask]),
            "score": out_scores[mask],
            "rank": (np.nonzero(mask)[1] + 1).astype(np.int32),
        }
    )


# ------------------------------------------------------------ items -> users
def _score_items(model: Any, codes: np.ndarray) -> np.ndarray:
    """Dense ``(len(codes), n_users)`` scores: the transpose of ``_score_users``."""
    if type(model)._score_users is not FittedModel._score_users:
        # a model with its own scoring: ask it, a chunk of users at a time
        users = np.arange(len(model.users_))
        step = max(1, _CHUNK_CELLS // max(1, len(model.items_)))
        parts = [
            model._score_users(users[a : a + step])[:, codes] for a in range(0, len(users), step)
        ]
        return np.ascontiguousarray(np.concatenate(parts).T, dtype=np.float32)
    scores = (
        np.asarray(model.item_bias_, np.float32)[codes][:, None]
        + np.asarray(model.global_mean_ + model.user_bias_, np.float32)[None, :]
    )
    if model.user_factors is not None and model.item_factors is not None:
        scores += model.item_factors[codes] @ model.user_factors.T
    return np.ascontiguousarray(scores, dtype=np.float32)


def _users_block(
    model: Any, codes: np.ndarray, excl: Any, k: int, meta: pd.DataFrame
) -> pd.DataFrame:
    """Top-k users of the items ``codes`` (exclusion CSR row r: users to mask for item r)."""
    ex_ptr, ex_idx = empty_csr(len(codes)) if excl is None else excl
    cand_ok = np.ascontiguousarray(np.asarray(model.user_counts_) > 0)
    n = len(codes)
    out = np.empty((n, k), dtype=np.int64)
    out_scores = np.empty((n, k), dtype=np.float32)
    out_n = np.empty(n, dtype=np.int64)
    step = max(1, _CHUNK_CELLS // max(1, len(model.users_)))
    for c0 in range(0, n, step):
        c1 = min(n, c0 + step)
        scores = _score_items(model, codes[c0:c1])
        topk_rows(scores, c0, k, cand_ok, ex_ptr, ex_idx, out[c0:c1], out_scores[c0:c1],
                  out_n[c0:c1])  # fmt: skip
    if n == 0:
        return meta
    mask = np.arange(k)[None, :] < out_n[:, None]
    return pd.DataFrame(
        {
            "item": model.items_.take(np.repeat(codes, out_n)),
            "user": model.users_.take(out[mask]),
            "score": out_scores[mask],
            "rank": (np.nonzero(mask)[1] + 1).astype(np.int32),
        }
    )


def _item_exclusions(model: Any, exclude: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Per model item, the model's codes of the users who have it in ``exclude``."""
    ptr, idx = _exclusion_all(model, exclude)  # exclude's users -> model item codes
    users = np.repeat(model._user_codes(exclude.users), np.diff(ptr))
    keep = users >= 0
    return _csr(idx[keep].astype(np.int64), users[keep], len(model.items_))


def recommend_users(
    model: Any, items: Any = None, k: int = 10, exclude: Any = None, *, on_unknown: str = "raise"
) -> Any:
    """Top-k users for items (see :meth:`dmf.Recommender.recommend_users`)."""
    import dask.dataframe as dd

    model._check_fitted()
    k = check_int("k", k, 1)
    check_k(k, int((np.asarray(model.user_counts_) > 0).sum()), "users seen in training")
    if items is None:
        codes = np.nonzero(np.asarray(model.item_counts_) > 0)[0]
    else:
        if len(_ids(items)) == 0:
            raise ParameterError("items is empty: pass at least one item id, or None for all")
        _, codes = known_codes(model._item_codes, items, "items=", on_unknown)
        if len(codes) == 0:
            raise ParameterError("items= names no item seen in training: nothing to rank")
    if exclude is not None and not isinstance(exclude, Ratings):
        raise ParameterError(
            f"exclude must be a dmf.Ratings (e.g. the training set) or None, "
            f"got {type(exclude).__name__}"
        )
    meta = pd.DataFrame(
        {
            "item": pd.Series(model.items_[:0]),
            "user": pd.Series(model.users_[:0]),
            "score": pd.Series([], dtype=np.float32),
            "rank": pd.Series([], dtype=np.int32),
        }
    )
    n_blocks = max(1, min(len(codes), 2 * n_threads()))
    blocks = np.array_split(codes.astype(np.int64), n_blocks)
    d_model = dask.delayed(model, pure=True)
    ex_all = None if exclude is None else _item_exclusions(model, exclude)
    parts = []
    for b in blocks:
        ex = None if ex_all is None else take_rows(*ex_all, b)
        parts.append(
            dask.delayed(_users_block)(
                d_model,
                b,
                ex,
                k,
                meta,
                dask_key_name=key("recommend-users-block", d_model.key, b, ex, k),
            )
        )
    return dd.from_delayed(parts, meta=meta, verify_meta=False)
