"""The baseline model: global mean plus regularised user and item biases."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from dmf._errors import check_float, check_int
from dmf.data._blocks import RowBlock
from dmf.data._ratings import Ratings
from dmf.engine import Engine
from dmf.models._recommender import Recommender
from dmf.models._training import FitArgs, Iterative, deprecated_alias, fit_method, train

__all__ = ["Baseline"]


def _item_residual_sums(
    block: RowBlock, b_user: np.ndarray, mu: float
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


class Baseline(Iterative, Recommender):
    r"""Global mean plus regularised user and item biases (Koren 2010, "baseline predictors").

    Prediction: :math:`\hat r_{ui} = \mu + b_u + b_i`. The biases are fitted by
    alternating closed-form updates, items first as Surprise's ``BaselineOnly``
    does, ``max_iter`` times:

    .. math::

        b_i = \frac{\sum_{u \in R(i)} (r_{ui} - \mu - b_u)}{\lambda_i + |R(i)|}, \qquad
        b_u = \frac{\sum_{i \in R(u)} (r_{ui} - \mu - b_i)}{\lambda_u + |R(u)|}

    With both regularisations 0 and ``max_iter=1`` this is the plain item-mean
    then user-mean model. Each update is a blocked reduction over the row blocks;
    users or items with no training ratings keep bias 0.

    Parameters
    ----------
    reg_user, reg_item : float
        :math:`\lambda_u`, :math:`\lambda_i` (>= 0). Defaults as Surprise's: 15 and 10.
    max_iter : int
        Alternating passes (>= 1); Surprise's ``n_epochs``.
    verbose : bool
        Print one line per iteration.
    n_iter : int, optional
        Deprecated name of ``max_iter``.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2],
    ...                    "rating": [5.0, 3.0, 4.0, 2.0, 1.0]})
    >>> model = dmf.Baseline(reg_user=0, reg_item=0, max_iter=1).fit(dmf.from_pandas(df))
    >>> float(round(model.predict(1, 2)[0], 3))  # 3.0 + 0.75 - 1.0
    2.75
    """

    kind = "baseline"
    _deprecated = ("n_iter",)

    def __init__(
        self,
        reg_user: float = 15.0,
        reg_item: float = 10.0,
        max_iter: int = 10,
        verbose: bool = False,
        n_iter: int | None = None,
    ) -> None:
        self.reg_user = reg_user
        self.reg_item = reg_item
        self.max_iter = max_iter
        self.verbose = verbose
        deprecated_alias(self, "n_iter", n_iter, "max_iter")

    def _validate_params(self) -> None:
        check_float("reg_user", self.reg_user, 0.0)
        check_float("reg_item", self.reg_item, 0.0)
        check_int("max_iter", self.max_iter, 1)

    @fit_method
    def fit(self, ratings: Any, args: FitArgs, /) -> Baseline:
        """Fit the biases to a :class:`dmf.Ratings`; returns ``self``.

        ``validation``, ``checkpoint``, ``checkpoint_every`` and ``resume`` as
        for :meth:`dmf.ALS.fit`.

        Examples
        --------
        >>> import dmf
        >>> from dmf.testing import random_ratings
        >>> model = dmf.Baseline(max_iter=3).fit(random_ratings(n_users=20, n_items=10))
        >>> len(model.history)
        3
        """
        return train(self, ratings, args)

    # ------------------------------------------------------- training hooks
    def _fingerprint(self) -> dict[str, Any]:
        params = {k: float(getattr(self, k)) for k in ("reg_user", "reg_item")}
        return {"params": params, "train": self.train_info_}

    def _iterations(
        self, ratings: Ratings, engine: Engine, start: int, saved: Any
    ) -> Iterator[dict[str, Any]]:
        mu = self.global_mean_
        edges = ratings.row_edges
        blocks = engine.values(ratings.blocks, RowBlock)
        b_user = np.zeros(ratings.n_users, dtype=np.float64)
        b_item = np.zeros(ratings.n_items, dtype=np.float64)
        if saved is not None:
            b_user, b_item = saved[0]["user_bias"], saved[0]["item_bias"]
        reg_u, reg_i = float(self.reg_user), float(self.reg_item)
        for it in range(start, int(self.max_iter)):
            bu = [b_user[a:b] for a, b in itertools.pairwise(edges)]
            parts = engine.map(
                "bias-items", _item_residual_sums, blocks, bu, shared=(mu,), token=it
            )
            sums, counts = engine.compute(engine.reduce("bias-reduce", _add_pairs, parts))[0]
            b_item = _ratio(sums, counts, reg_i)
            shared = (mu, engine.share(b_item), reg_u)
            new_bu = engine.map("bias-users", _user_bias, blocks, shared=shared, token=it)
            new_bu = engine.compute(new_bu)[0]
            b_user = np.concatenate(new_bu) if new_bu else b_user
            self._b = (b_user, b_item)
            self._publish()
            yield {"iteration": it + 1}

    def _publish(self) -> None:
        b_user, b_item = self._b
        self.user_bias_ = b_user.astype(np.float32)
        self.item_bias_ = b_item.astype(np.float32)
        self.user_factors_ = None
        self.item_factors_ = None

    def _checkpoint_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        b_user, b_item = self._b
        return {"user_bias": b_user, "item_bias": b_item}, {}

    def _finish(self) -> None:
        super()._finish()
        if not hasattr(self, "_b"):  # resumed at the last iteration: nothing left to run
            self._b = (
                np.zeros(len(self.users_), np.float64),
                np.zeros(len(self.items_), np.float64),
            )
        self._publish()
        del self._b
