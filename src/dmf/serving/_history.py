"""Recommendations for a new user from a list of items, with no rating column and no refit.

The history is folded in as implicit feedback: each listed item is an
interaction of value 1 (an item listed twice has value 2), solved against the
fixed item factors with the model's own user step (:func:`dmf.serving.user_step`,
the implicit ALS step for ``ALS(implicit=True)``, as implicit's
``recalculate_user``). NumPy only, no Dask graph. The listed items are never
recommended back.

An empty history (or one whose items were all skipped as unknown) falls back
to popularity: items ranked by their number of training interactions. Rating
models (explicit ALS, SGD, Baseline) need ratings to fold in a user; for them
this is an error that says to use ``fold_in`` with a rating column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dmf._errors import ParameterError, check_int
from dmf.core._protocol import _ids
from dmf.data._blocks import CSR
from dmf.kernels._ranking import topk_rows
from dmf.serving._candidates import candidate_mask, check_k, known_codes
from dmf.serving._foldin import user_step

__all__ = ["history_scores", "recommend_new"]


def _takes_history(model: Any) -> bool:
    return model.kind == "popular" or bool(getattr(model, "implicit", False))


def history_scores(model: Any, codes: np.ndarray) -> np.ndarray:
    """Scores of every item for a user whose history is the item ``codes`` (repeats count)."""
    counts = np.asarray(model.item_counts_, dtype=np.float32)
    if len(codes) == 0 or model.kind == "popular" or model.item_factors is None:
        # popularity fallback (empty history), or a model whose scores ignore the user
        base = counts if len(codes) == 0 else None
        if base is None:
            base = np.asarray(model.item_bias_, np.float32) + np.float32(model.global_mean_)
        return np.ascontiguousarray(base[None, :], dtype=np.float32)
    uniq, value = np.unique(codes, return_counts=True)
    csr = CSR(0, 1, len(model.items_), np.array([0, len(uniq)], np.int64),
              uniq.astype(np.int32), value.astype(np.float32))  # fmt: skip
    x, b = user_step(model)(csr)
    V = model.item_factors
    scores = (V @ np.asarray(x[0], V.dtype)).astype(np.float32)
    scores += np.asarray(model.item_bias_, np.float32) + np.float32(model.global_mean_ + b[0])
    return np.ascontiguousarray(scores[None, :])


def recommend_new(
    model: Any,
    history: Any,
    k: int = 10,
    *,
    items: Any = None,
    on_unknown: str = "raise",
) -> pd.DataFrame:
    """Top-k items for a new user (see :meth:`dmf.Recommender.recommend_new`)."""
    model._check_fitted()
    if not _takes_history(model):
        raise ParameterError(
            f"recommend_new folds in a list of items without ratings, which needs an "
            f"implicit-feedback model (ALS(implicit=True), Popular); this "
            f"{type(model).__name__} predicts ratings: use fold_in with a rating column"
        )
    k = check_int("k", k, 1)
    base = np.ascontiguousarray(np.asarray(model.item_counts_) > 0)
    cand = candidate_mask(model, base, items, on_unknown)
    check_k(k, int(cand.sum()), "catalogue" if items is None else "items= list")
    ids = _ids(history) if history is not None else np.empty(0, dtype=object)
    _, codes = known_codes(model._item_codes, ids, "history", on_unknown)
    scores = history_scores(model, codes)
    seen = np.unique(codes).astype(np.int32)
    out = np.empty((1, k), dtype=np.int64)
    out_scores = np.empty((1, k), dtype=np.float32)
    out_n = np.empty(1, dtype=np.int64)
    ex_ptr = np.array([0, len(seen)], dtype=np.int64)
    topk_rows(scores, 0, k, cand, ex_ptr, seen, out, out_scores, out_n)
    n = int(out_n[0])
    return pd.DataFrame(
        {
            "item": model.items_.take(out[0, :n]),
            "score": out_scores[0, :n],
            "rank": np.arange(1, n + 1, dtype=np.int32),
        }
    )
