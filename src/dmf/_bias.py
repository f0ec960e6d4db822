"""The baseline model: global mean plus regularised user and item biases."""

from __future__ import annotations

import itertools
import time
from typing import Any

import dask
import numpy as np

from dmf._base import Recommender
from dmf._blocks import RowBlock
from dmf._compute import in_process, key, local_values, reduce_local, thread_map, tree_reduce
from dmf._errors import check_float, check_int
from dmf._ratings import check_ratings

__all__ = ["Baseline"]


def _item_residual_sums(
    block: RowBlock, mu: float, b_user: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per item of one row block: sum of ``r - mu - b_u`` and the rating count."""
    resid = block.data.astype(np.float64) - mu - b_user[block.rows]
    sums = np.bincount(block.cols, weights=resid, minlength=block.n_items)
    counts = np.bincount(block.cols, minlength=block.n_items)
    return sums, counts


def _add_pairs(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _user_bias(block: RowBlock, mu: float, b_item: np.ndarray, reg: float) -> np.ndarray:
    """``b_u = sum(r - mu - b_i) / (reg + n_u)`` for the users of one row block."""
    resid = block.data.astype(np.float64) - mu - b_item[block.cols]
    sums = np.bincount(block.rows, weights=resid, minlength=block.n_rows)
    counts = np.bincount(block.rows, minlength=block.n_rows)
    return _ratio(sums, counts, reg)


def _ratio(sums: np.ndarray, counts: np.ndarray, reg: float) -> np.ndarray:
    den = reg + counts
    out = np.zeros_like(sums, dtype=np.float64)
    np.divide(sums, den, out=out, where=den > 0)
    return out


class Baseline(Recommender):
    r"""Global mean plus regularised user and item biases (Koren 2010, "baseline predictors").

    Prediction: :math:`\hat r_{ui} = \mu + b_u + b_i`. The biases are fitted by
    alternating closed-form updates, items first as Surprise's ``BaselineOnly``
    does, ``n_iter`` times:

    .. math::

        b_i = \frac{\sum_{u \in R(i)} (r_{ui} - \mu - b_u)}{\lambda_i + |R(i)|}, \qquad
        b_u = \frac{\sum_{i \in R(u)} (r_{ui} - \mu - b_i)}{\lambda_u + |R(u)|}

    With both regularisations 0 and ``n_iter=1`` this is the plain item-mean
    then user-mean model. Each update is a blocked reduction over the row blocks
    (a Dask graph); users or items with no training ratings keep bias 0.

    Parameters
    ----------
    reg_user, reg_item : float
        :math:`\lambda_u`, :math:`\lambda_i` (>= 0). Defaults as Surprise's: 15 and 10.
    n_iter : int
        Alternating passes (>= 1).
    verbose : bool
        Print one line per iteration.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2],
    ...                    "rating": [5.0, 3.0, 4.0, 2.0, 1.0]})
    >>> model = dmf.Baseline(reg_user=0, reg_item=0, n_iter=1).fit(dmf.from_pandas(df))
    >>> float(round(model.predict(1, 2)[0], 3))  # 3.0 + 0.75 - 1.0
    2.75
    """

    kind = "baseline"

    def __init__(
        self,
        reg_user: float = 15.0,
        reg_item: float = 10.0,
        n_iter: int = 10,
        verbose: bool = False,
    ) -> None:
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.n_iter = n_iter
        self.verbose = verbose

    def _validate_params(self) -> None:
        check_float("reg_user", self.reg_user, 0.0)
        check_float("reg_item", self.reg_item, 0.0)
        check_int("n_iter", self.n_iter, 1)

    def fit(self, ratings: Any) -> Baseline:
        """Fit the biases to a :class:`dmf.Ratings`; returns ``self``.

        Examples
        --------
        >>> import dmf
        >>> from dmf.testing import random_ratings
        >>> model = dmf.Baseline(n_iter=3).fit(random_ratings(n_users=20, n_items=10))
        >>> len(model.history)
        3
        """
        self._validate_params()
        ratings = check_ratings(ratings)
        self._set_training_state(ratings)
        mu = self.global_mean_
        blocks = ratings.blocks
        edges = ratings.row_edges
        b_user = np.zeros(ratings.n_users, dtype=np.float64)
        b_item = np.zeros(ratings.n_items, dtype=np.float64)
        local = in_process(ratings.nnz)  # small data, no Client: blocks as values, no graphs
        if local:
            blocks = local_values(blocks, RowBlock)
        reg_u, reg_i = float(self.reg_user), float(self.reg_item)
        for it in range(self.n_iter):
            t0 = time.perf_counter()
            if local:
                parts = thread_map(
                    lambda n, bu=b_user: _item_residual_sums(
                        blocks[n], mu, bu[edges[n] : edges[n + 1]]
                    ),
                    range(len(blocks)),
                )
                sums, counts = reduce_local(_add_pairs, parts)
                b_item = _ratio(sums, counts, reg_i)
                new_bu = thread_map(lambda b, bi=b_item: _user_bias(b, mu, bi, reg_u), blocks)
                b_user = np.concatenate(new_bu) if new_bu else b_user
            else:
                b_item, b_user = self._iteration_graph(blocks, edges, mu, b_user, it)
            self._record(self.verbose, iteration=it + 1, seconds=time.perf_counter() - t0)
        self.user_bias_ = b_user.astype(np.float32)
        self.item_bias_ = b_item.astype(np.float32)
        self.user_factors_ = None
        self.item_factors_ = None
        return self

    def _iteration_graph(
        self, blocks: list[Any], edges: np.ndarray, mu: float, b_user: np.ndarray, it: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """One iteration as two Dask graphs (items, then users): the new item and user biases."""
        d_bu = [dask.delayed(b_user[e0:e1]) for e0, e1 in itertools.pairwise(edges)]
        parts = [
            dask.delayed(_item_residual_sums)(
                b, mu, bu, dask_key_name=key("bias-items", b.key, bu.key, it)
            )
            for b, bu in zip(blocks, d_bu, strict=True)
        ]
        total = tree_reduce(_add_pairs, parts, "bias-reduce")
        sums, counts = dask.compute(total)[0]
        b_item = _ratio(sums, counts, float(self.reg_item))
        d_bi = dask.delayed(b_item, pure=True)
        new_bu = [
            dask.delayed(_user_bias)(
                b, mu, d_bi, float(self.reg_user), dask_key_name=key("bias-users", b.key, it)
            )
            for b in blocks
        ]
        return b_item, (np.concatenate(dask.compute(new_bu)[0]) if new_bu else b_user)
