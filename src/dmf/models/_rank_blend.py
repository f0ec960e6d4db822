"""A ranking blend: fitted models' standardised scores, weighted for a top-N metric.

``dmf.blend([als, pop], validation=valid, objective="ndcg@10", train=train)``
scores user *u* and item *i* by

.. math::

    s_{ui} = \\sum_j w_j \\, z^{(j)}_{ui}, \\qquad
    z^{(j)}_{ui} = \\frac{s^{(j)}_{ui} - \\bar s^{(j)}_u}{\\sigma^{(j)}_u}

where :math:`s^{(j)}` is member *j*'s score and the mean and standard deviation
are over the items seen in training (per user), so members on different scales
(interaction counts, dot products, ratings) add up. The weights
(non-negative) maximise the objective on the validation set by coordinate
ascent: start from the best single member, then for each member in turn try a
fixed ladder of weights and keep the best, for a few rounds. The blend is
deterministic and never worse on the validation set than its best member.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dmf._errors import ParameterError, RatingsError, check_int
from dmf.evaluation import evaluate
from dmf.evaluation._metrics import to_ratings
from dmf.evaluation._ranking import parse_ranking_metric
from dmf.models._fusion import Fusion
from dmf.models._recommender import Recommender, check_members

__all__ = ["RankBlend"]

#: Weights tried for one member while the others stay fixed.
_LADDER = (0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


class RankBlend(Fusion):
    r"""Members' per-user standardised scores, weighted for a ranking metric.

    Build one with ``dmf.blend(models, validation=..., objective="ndcg@10", train=...)``.
    Scores are :math:`\sum_j w_j z^{(j)}_{ui}` (see the module notes); every
    member must have been fitted on the same training data (the same user and
    item ids), which ``train`` masks while the weights are chosen.

    Parameters
    ----------
    objective : str
        A ranking metric of :func:`dmf.evaluate` with a cut-off (``"ndcg@10"``).
    relevance_threshold : float, optional
        As for :func:`dmf.evaluate` on the validation set.
    rounds : int
        Coordinate-ascent passes over the members (>= 1).

    Attributes
    ----------
    members_ : list of Recommender
    weights_ : numpy.ndarray
    validation_score_ : float
        The objective of the blend on the validation set.
    member_scores_ : list of float
        The objective of each member alone on the validation set.

    Examples
    --------
    >>> import dmf
    >>> from dmf.testing import random_ratings
    >>> train, valid = dmf.split.by_user(random_ratings(n_users=60, n_items=30), test_size=0.3)
    >>> members = [dmf.Popular().fit(train), dmf.ALS(implicit=True, rank=4).fit(train)]
    >>> model = dmf.blend(members, validation=valid, objective="ndcg@5", train=train)
    >>> model.validation_score_ >= max(model.member_scores_)
    True
    """

    kind = "rank_blend"

    def __init__(
        self, objective: str = "ndcg@10", relevance_threshold: float | None = None, rounds: int = 3
    ) -> None:
        self.objective = objective
        self.relevance_threshold = relevance_threshold
        self.rounds = rounds

    def fit(self, models: Any, validation: Any = None, train: Any = None) -> RankBlend:
        """Choose the member weights on ``validation`` (``train`` masked); returns ``self``.

        Examples
        --------
        >>> import dmf
        >>> r = dmf.testing.random_ratings(n_users=40, n_items=20, seed=1)
        >>> train, valid = dmf.split.random(r, test_size=0.3, seed=0)
        >>> m = dmf.RankBlend("precision@3").fit([dmf.Popular().fit(train)], valid, train)
        >>> m.weights_.tolist()
        [1.0]
        """
        parsed = parse_ranking_metric(str(self.objective))
        if parsed is None or parsed[0] in ("auc", "coverage", "novelty", "diversity"):
            raise ParameterError(
                f"objective={self.objective!r} must be an accuracy ranking metric with a "
                "cut-off, e.g. 'ndcg@10' or 'precision@10'"
            )
        rounds = check_int("rounds", self.rounds, 1)
        members = check_members(models)
        first = members[0]
        bad = [
            j
            for j, m in enumerate(members)
            if not (m.users_.equals(first.users_) and m.items_.equals(first.items_))
        ]
        if bad:
            raise ParameterError(
                f"members {bad} were fitted on other users or items than members[0]: a ranking "
                "blend adds scores per (user, item), so fit every member on one training set"
            )
        if validation is None:
            raise RatingsError("validation= is required: the weights are chosen on held-out data")
        valid = to_ratings(validation, name="validation")
        if train is not None:
            train = to_ratings(train, name="train")
        name = str(self.objective).lower()

        def score(w: np.ndarray) -> float:
            self._adopt(members, w)
            res = evaluate(self, valid, [name], train=train,
                           relevance_threshold=self.relevance_threshold)  # fmt: skip
            return float(res[name])

        eye = np.eye(len(members))
        singles = [score(eye[j]) for j in range(len(members))]
        w = eye[int(np.argmax(singles))].copy()
        best = max(singles)
        for _ in range(rounds):
            improved = False
            for j in range(len(members)):
                for c in _LADDER:
                    if c == w[j]:
                        continue
                    trial = w.copy()
                    trial[j] = c
                    if not trial.any():
                        continue
                    got = score(trial)
                    if got > best + 1e-12:
                        best, w, improved = got, trial, True
            if not improved:
                break
        self._adopt(members, w)
        self.validation_score_ = best
        self.member_scores_ = singles
        self._record(False, iteration=1, validation_score=best)
        return self

    def _adopt(self, members: list[Recommender], w: np.ndarray) -> None:
        self._adopt_members(members, w)
        self.global_mean_ = 0.0
        self.rating_scale_ = (-np.inf, np.inf)
        # users unseen in training are ranked by the members' cold-start scores, blended
        self.item_bias_ = np.zeros(len(self.items_), dtype=np.float32)
        cold = self._blend(lambda m: (m.global_mean_ + m.item_bias_)[None, :].astype(np.float32))
        self.item_bias_ = cold[0]

    def _adopt_weights(self, members: list[Recommender]) -> None:
        self._adopt(members, self.weights_)

    def _blend(self, scores_of: Any) -> np.ndarray:
        seen = np.asarray(self.item_counts_) > 0
        out = None
        for m, w in zip(self.members_, self.weights_, strict=True):
            if w == 0.0:
                continue
            s = np.asarray(scores_of(m), dtype=np.float64)
            mean = s[:, seen].mean(axis=1, keepdims=True)
            sd = s[:, seen].std(axis=1, keepdims=True)
            z = np.divide(s - mean, sd, out=np.zeros_like(s), where=sd > 0)
            out = w * z if out is None else out + w * z
        return out.astype(np.float32)

    def _score_users(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.int64)
        return self._blend(lambda m: m._score_users(u))

    def _predict_codes(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.int64)
        i = np.asarray(i, dtype=np.int64)
        out = np.zeros(len(u), dtype=np.float32)
        for uu in np.unique(u):
            rows = u == uu
            full = self._score_users(np.array([uu])) if uu >= 0 else self.item_bias_[None, :]
            out[rows] = np.where(i[rows] >= 0, full[0, np.maximum(i[rows], 0)], np.nan)
        return out

    def _clip(self, pred: np.ndarray) -> np.ndarray:
        return pred  # blended standardised scores, not ratings

    # ---------------------------------------------------- persistence hooks
    def _store_variables(self) -> dict[str, Any]:
        return {
            "user_bias": (("user",), self.user_bias_),
            "item_bias": (("item",), self.item_bias_),
            "weights": self._weights_variable(),
        }

    def _restore_store(self, ds: Any, read_child: Any) -> None:
        self._restore_members(ds, read_child)
