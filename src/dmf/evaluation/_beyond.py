"""Beyond-accuracy metrics of top-k lists, and the lift of a model over popularity.

Per evaluated user *u* with top list :math:`T_u` (its first *k* entries):

- ``novelty@k``: the mean popularity rank of the items in :math:`T_u`, rank 1
  being the item with the most training interactions (tied items share the
  best rank of their group). Higher means less popular items are recommended;
- ``diversity@k`` (intra-list diversity): the mean cosine distance
  :math:`1 - \\cos(q_i, q_j)` over the pairs :math:`i \\ne j` of :math:`T_u`, on
  the item factors :math:`q` of the evaluated model (a zero factor vector has
  cosine 0 with everything); users with fewer than two items in the list count
  for nothing.

``baseline="popular"`` in :func:`dmf.evaluate` scores the same test set with
popularity, items ranked by the evaluated model's own training counts (what
``dmf.Popular`` fitted on the same training data ranks by), and reports each
ranking metric's ratio to it as ``<metric>_lift``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dmf._errors import ParameterError
from dmf.core._protocol import FittedModel

__all__ = ["BEYOND", "beyond_inputs", "beyond_users", "popularity_model", "popularity_ranks"]

#: Beyond-accuracy metrics taking a cut-off.
BEYOND = ("novelty", "diversity")


def popularity_ranks(item_counts: np.ndarray) -> np.ndarray:
    """Rank 1 for the most interacted item; ties share the best rank; unseen items NaN."""
    counts = np.asarray(item_counts, dtype=np.float64)
    order = np.sort(counts[counts > 0])[::-1]
    # rank = 1 + number of items with strictly more interactions
    ranks = 1.0 + np.searchsorted(-order, -counts, side="left")
    return np.where(counts > 0, ranks, np.nan)


def beyond_inputs(model: Any, bases: set[str]) -> tuple[np.ndarray, np.ndarray | None] | None:
    """(popularity ranks, unit item factors or None) the block tasks need, or None."""
    if not bases & set(BEYOND):
        return None
    unit = None
    if "diversity" in bases:
        f = getattr(model, "item_factors_", None)
        if f is None:
            raise ParameterError(
                f"diversity@k is measured on item factors: this {type(model).__name__} has none "
                "(item_factors_ is None); evaluate a factor model such as dmf.ALS"
            )
        f = np.asarray(f, dtype=np.float64)
        norms = np.linalg.norm(f, axis=1, keepdims=True)
        unit = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
    return popularity_ranks(model.item_counts_), unit


def beyond_users(
    tops: np.ndarray, ks: np.ndarray, pop_rank: np.ndarray, unit: np.ndarray | None
) -> np.ndarray:
    """``(n_users, len(ks), 2)``: novelty and diversity per user and cut-off (NaN: undefined)."""
    n = tops.shape[0]
    out = np.full((n, len(ks), 2), np.nan)
    for c, k in enumerate(ks):
        top = tops[:, : int(k)]
        valid = top >= 0
        safe = np.where(valid, top, 0)
        m = valid.sum(axis=1)
        ranks = np.where(valid, pop_rank[safe], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, c, 0] = np.where(m > 0, ranks.sum(axis=1) / m, np.nan)
        if unit is None or n == 0:
            continue
        F = unit[safe] * valid[:, :, None]
        dist = 1.0 - np.einsum("nid,njd->nij", F, F)
        pairs = valid[:, :, None] & valid[:, None, :] & ~np.eye(top.shape[1], dtype=bool)
        n_pairs = pairs.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, c, 1] = np.where(n_pairs > 0, (dist * pairs).sum(axis=(1, 2)) / n_pairs, np.nan)
    return out


def popularity_model(model: Any) -> FittedModel:
    """A scorer over ``model``'s ids ranking items by its training counts (ties: lower code)."""
    pop = FittedModel()
    pop.users_, pop.items_ = model.users_, model.items_
    pop.user_counts_, pop.item_counts_ = model.user_counts_, model.item_counts_
    pop.global_mean_ = 0.0
    pop.user_bias_ = np.zeros(len(model.users_), dtype=np.float32)
    pop.item_bias_ = np.asarray(model.item_counts_, dtype=np.float32)
    pop.user_factors_ = pop.item_factors_ = None
    pop.rating_scale_ = (-np.inf, np.inf)
    return pop
