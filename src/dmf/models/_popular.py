"""The popularity model: items ranked by how often they were interacted with."""

from __future__ import annotations

from typing import Any

import numpy as np

from dmf._errors import ParameterError, RatingsError, check_float
from dmf.data._blocks import RowBlock
from dmf.data._io import to_ratings
from dmf.data._ratings import check_ratings
from dmf.engine import Engine
from dmf.models._recommender import Recommender

__all__ = ["Popular"]

_SECONDS_PER_DAY = 86400.0


def _latest(block: RowBlock) -> int:
    return int(block.ts.max()) if block.ts is not None and len(block.ts) else np.iinfo(np.int64).min


def _item_weights(block: RowBlock, t_ref: int | None, half_life_s: float | None) -> np.ndarray:
    """Per item of one row block: the interaction count, or the sum of recency weights."""
    if half_life_s is None:
        return np.bincount(block.cols, minlength=block.n_items).astype(np.float64)
    age = (t_ref - block.ts.astype(np.float64)) / half_life_s
    return np.bincount(block.cols, weights=np.exp2(-age), minlength=block.n_items)


def _max(*parts: int) -> int:
    return max(parts)


def _add(*parts: np.ndarray) -> np.ndarray:
    return np.sum(parts, axis=0)


class Popular(Recommender):
    r"""Most popular items: every user gets the items with the most interactions.

    The score of item :math:`i` is its number of training interactions (every
    rating counts once, whatever its value), or with ``half_life`` set, the sum
    of recency weights

    .. math::

        s_i = \sum_{u \in R(i)} 2^{-(t_\text{ref} - t_{ui}) / h}

    with :math:`t_\text{ref}` the latest training timestamp and :math:`h` the
    half-life: an interaction ``h`` days older than the latest one counts half.
    The floor every top-N evaluation should report (``dmf.evaluate(...,
    baseline="popular")`` does it in the same call).

    The scores are stored as ``item_bias_`` (``global_mean_`` and ``user_bias_``
    are zero), so :meth:`predict` returns an item's score, not a rating, and is
    never clipped to the rating scale; ``recommend``, ``evaluate``, ``save`` and
    ``dmf.load`` work as for every model. Equal scores rank by the lower item code.

    Parameters
    ----------
    half_life : float, optional
        Half-life in days (> 0) of the recency weighting; needs ratings with
        timestamps. ``None`` (default): plain counts.
    verbose : bool
        Print a line when the fit is done.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> df = pd.DataFrame({"user": [1, 2, 2, 3], "item": [10, 10, 20, 30],
    ...                    "rating": [5.0, 1.0, 4.0, 2.0]})
    >>> model = dmf.Popular().fit(dmf.from_pandas(df))
    >>> model.item_bias_.tolist()
    [2.0, 1.0, 1.0]
    >>> model.recommend(users=[3], k=2)["item"].tolist()
    [10, 20]
    """

    kind = "popular"

    def __init__(self, half_life: float | None = None, verbose: bool = False) -> None:
        self.half_life = half_life
        self.verbose = verbose

    def _validate_params(self) -> None:
        if self.half_life is not None:
            check_float("half_life", self.half_life, 0.0)
            if not float(self.half_life) > 0.0:
                raise ParameterError(
                    f"half_life={self.half_life!r} must be > 0 days, or None for plain counts"
                )
        if not isinstance(self.verbose, bool):
            raise ParameterError(f"verbose must be True or False, got {self.verbose!r}")

    def fit(self, ratings: Any) -> Popular:
        """Count (or recency-weight) each item's interactions in ``ratings``; returns ``self``.

        ``ratings`` is a :class:`dmf.Ratings` or a pandas DataFrame (``user``,
        ``item`` and ``rating`` columns), as for every model.

        One ``popular-items`` task per row block counts its items; a tree
        reduction sums them (with ``half_life``, a ``popular-latest`` reduction
        first finds the reference time).

        Raises
        ------
        RatingsError
            Empty ratings, or ``half_life`` set and the ratings have no timestamps.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> df = pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [3.0, 4.0],
        ...                    "t": [0, 86400]})
        >>> r = dmf.from_pandas(df, timestamp="t")
        >>> dmf.Popular(half_life=1.0).fit(r).item_bias_.tolist()  # 1/2 + 1
        [1.5]
        """
        self._validate_params()
        ratings = check_ratings(to_ratings(ratings, name="ratings"))
        half = None if self.half_life is None else float(self.half_life) * _SECONDS_PER_DAY
        if half is not None and not ratings.has_timestamps:
            raise RatingsError(
                f"half_life={self.half_life!r} weights interactions by age and needs timestamps; "
                "these ratings have none (build them with timestamp=...), or use half_life=None"
            )
        self._set_training_state(ratings)
        engine = Engine.for_work(ratings.nnz)
        blocks = engine.values(ratings.blocks, RowBlock)
        t_ref = None
        if half is not None:
            latest = engine.map("popular-latest", _latest, blocks)
            t_ref = int(engine.compute(engine.reduce("popular-latest-reduce", _max, latest))[0])
        parts = engine.map("popular-items", _item_weights, blocks, shared=(t_ref, half))
        scores = engine.compute(engine.reduce("popular-reduce", _add, parts))[0]
        self.global_mean_ = 0.0
        self.user_bias_ = np.zeros(ratings.n_users, dtype=np.float32)
        self.item_bias_ = np.asarray(scores, dtype=np.float64)
        self.user_factors_ = None
        self.item_factors_ = None
        self.reference_time_ = t_ref
        self._record(self.verbose, iteration=1, n_items=int((scores > 0).sum()))
        return self

    def _fold_in_users(self, csr: Any) -> tuple[None, np.ndarray]:
        # a folded-in user gets the same scores as everybody: no user bias from the counts
        return None, np.zeros(len(csr.indptr) - 1, dtype=np.float64)

    def _clip(self, pred: np.ndarray) -> np.ndarray:
        return pred  # scores are counts, not ratings: the rating scale does not apply
