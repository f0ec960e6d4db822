"""Model fusion: a linear blend of fitted models, weighted on a validation set.

``dmf.blend([als, sgd, baseline], validation=valid)`` fits

.. math::

    \\hat r_{ui} = c + \\sum_j w_j \\, \\operatorname{clip}(\\hat r^{(j)}_{ui})

by least squares on the validation ratings, with the member predictions
clipped to their rating scale (as ``predict`` returns them), a free intercept
:math:`c`, and either non-negative weights (``method="nnls"``, Lawson-Hanson
via :func:`scipy.optimize.nnls`) or ridge-penalised ones (``method="ridge"``,
penalty ``alpha * ||w||^2``). Both solve the problem centred on the validation
means, which is exact for the free intercept.

``method="fwls"`` is feature-weighted linear stacking (Sill et al. 2009): each
member's weight is a linear function of meta-features of the pair,
:math:`w_j(u, i) = \\sum_f v_{jf} f_f(u, i)`, with :math:`f = (1, \\log(1 + n_u),
\\log(1 + n_i), \\log(1 + n_u) \\log(1 + n_i) / 10)` from the first member's
training counts (how much is known about the user and the item), plus a
free term :math:`\\sum_f c_f f_f`; ridge regression (penalty ``alpha``) on the
validation ratings fits :math:`v` and :math:`c`. Members that are good at
different support levels (biases for rare users, factors for frequent ones)
then each count where they are good.

The blend is itself a :class:`dmf.Recommender`: ``predict``, ``recommend``,
``evaluate``, ``save``/``dmf.load`` and ``fold_in`` (each member folds in)
work on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import nnls

from dmf._errors import RatingsError, check_choice, check_float
from dmf.evaluation._metrics import to_ratings
from dmf.models._fusion import Fusion
from dmf.models._rank_blend import RankBlend
from dmf.models._recommender import Recommender, check_members

__all__ = ["Blend", "blend"]

BLEND_METHODS = ("nnls", "ridge", "fwls")
#: Meta-features of ``method="fwls"``.
N_FEATURES = 4


def support_features(nu: np.ndarray, ni: np.ndarray) -> list[np.ndarray]:
    """The FWLS meta-features ``1, log(1+n_u), log(1+n_i), log(1+n_u)log(1+n_i)/10``.

    ``nu`` and ``ni`` broadcast (a column of users against a row of items).
    """
    lu = np.log1p(np.asarray(nu, dtype=np.float64))
    li = np.log1p(np.asarray(ni, dtype=np.float64))
    return [np.ones(np.broadcast(lu, li).shape), lu + 0 * li, li + 0 * lu, lu * li / 10.0]


def _counts(model: Any, u: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nu = np.where(u >= 0, model.user_counts_[np.maximum(u, 0)], 0)
    ni = np.where(i >= 0, model.item_counts_[np.maximum(i, 0)], 0)
    return nu, ni


def _fit_weights(
    X: np.ndarray, y: np.ndarray, method: str, alpha: float
) -> tuple[np.ndarray, float]:
    """Weights and intercept of ``y ~ c + X w`` (centred least squares)."""
    xm, ym = X.mean(axis=0), y.mean()
    Xc, yc = X - xm, y - ym
    if method == "nnls":
        w, _ = nnls(Xc, yc)
    else:
        m = X.shape[1]
        w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(m), Xc.T @ yc)
    return np.asarray(w, dtype=np.float64), float(ym - xm @ w)


class Blend(Fusion):
    r"""A linear blend of fitted dmf models (build one with :func:`dmf.blend`).

    Prediction: :math:`c + \sum_j w_j \operatorname{clip}(\hat r^{(j)}_{ui})`,
    clipped to the rating scale of the first member. The blend's id maps are
    those of the first member; other members are matched by original id
    (ids a member never saw get that member's cold-start fallback).

    Parameters
    ----------
    method : {"nnls", "ridge", "fwls"}
        Non-negative least squares (default), ridge regression, or
        feature-weighted linear stacking (ridge on member x meta-feature terms).
    alpha : float
        Ridge penalty (>= 0; ``"ridge"`` and ``"fwls"``).

    Attributes
    ----------
    members_ : list of Recommender
    weights_ : numpy.ndarray
        One weight per member (``"fwls"``: the weight at zero support, ``v[:, 0]``).
    feature_weights_, feature_intercepts_ : numpy.ndarray
        ``"fwls"`` only: :math:`v` (members x features) and :math:`c` (features).
    intercept_ : float
    validation_rmse_ : float
        RMSE of the blend on the validation set (clipped predictions).
    user_bias_, item_bias_ : numpy.ndarray
        A blend has no biases of its own: ``user_bias_`` is zero and
        ``global_mean_ + item_bias_`` is the blend's prediction for a user
        unseen in training (used to rank items for such users).

    Examples
    --------
    >>> import dmf
    >>> from dmf.testing import random_ratings
    >>> r = random_ratings(n_users=40, n_items=30, seed=2)
    >>> train, valid = dmf.split.random(r, test_size=0.25, seed=0)
    >>> a = dmf.Baseline(reg_user=0, reg_item=0).fit(train)
    >>> b = dmf.Baseline(reg_user=50, reg_item=50).fit(train)
    >>> model = dmf.blend([a, b], validation=valid)
    >>> model.weights_.shape, bool((model.weights_ >= 0).all())
    ((2,), True)
    """

    kind = "blend"
    _store_required = ("weights", "user_counts", "item_counts")

    def __init__(self, method: str = "nnls", alpha: float = 1.0) -> None:
        self.method = method
        self.alpha = alpha

    # ------------------------------------------------------------------ fit
    def fit(self, models: Any, validation: Any = None) -> Blend:
        """Fit the blend weights of ``models`` on ``validation``; returns ``self``.

        Parameters
        ----------
        models : list of fitted dmf models
        validation : Ratings or pandas.DataFrame
            Held-out ratings (columns ``user``, ``item``, ``rating``) that the
            members were *not* trained on.

        Examples
        --------
        >>> import dmf
        >>> from dmf.testing import random_ratings
        >>> train = random_ratings(n_users=30, n_items=20, seed=0)
        >>> valid = random_ratings(n_users=30, n_items=20, seed=1)
        >>> members = [dmf.Baseline().fit(train), dmf.ALS(rank=2, max_iter=2).fit(train)]
        >>> blend = dmf.Blend().fit(members, validation=valid)
        >>> blend.validation_rmse_ > 0
        True
        """
        check_choice("method", self.method, BLEND_METHODS)
        alpha = check_float("alpha", self.alpha, 0.0)
        members = check_members(models)
        if validation is None:
            raise RatingsError(
                "validation= is required: the blend weights are fitted on held-out ratings"
            )
        valid = to_ratings(validation, name="validation")
        if valid.nnz == 0:
            raise RatingsError("validation is empty: 0 ratings")
        df = valid.to_pandas()
        users, items = df["user"].to_numpy(), df["item"].to_numpy()
        y = df["rating"].to_numpy(dtype=np.float64)
        X = np.column_stack([m.predict(users, items).astype(np.float64) for m in members])
        if self.method == "fwls":
            first = members[0]
            nu, ni = _counts(first, first._user_codes(users), first._item_codes(items))
            F = np.column_stack(support_features(nu, ni))
            D = np.column_stack([X[:, [j]] * F for j in range(X.shape[1])] + [F])
            theta = np.linalg.solve(D.T @ D + alpha * np.eye(D.shape[1]), D.T @ y)
            V = theta[:-N_FEATURES].reshape(len(members), N_FEATURES)
            self.feature_weights_, self.feature_intercepts_ = V, theta[-N_FEATURES:]
            self._adopt(members, V[:, 0], float(theta[-N_FEATURES]))
            pred = self._clip((D @ theta).astype(np.float32))
        else:
            self.__dict__.pop("feature_weights_", None)
            self.__dict__.pop("feature_intercepts_", None)
            w, c = _fit_weights(X, y, self.method, alpha)
            self._adopt(members, w, c)
            pred = self._clip(np.float32(c) + (X @ w).astype(np.float32))
        self.validation_rmse_ = float(np.sqrt(np.mean((pred - y) ** 2)))
        self._record(
            False,
            iteration=1,
            validation_rmse=self.validation_rmse_,
            **{
                f"member_{j}_rmse": float(np.sqrt(np.mean((X[:, j] - y) ** 2)))
                for j in range(len(members))
            },
        )
        return self

    def _adopt(self, members: list[Recommender], w: np.ndarray, c: float) -> None:
        """Set the fitted state from members, weights and intercept."""
        first = self._adopt_members(members, w)
        self.global_mean_ = float(first.global_mean_)
        self.rating_scale_ = tuple(first.rating_scale_)
        self.intercept_ = float(c)
        self._maps = [
            None
            if (m.users_.equals(first.users_) and m.items_.equals(first.items_))
            else (m._user_codes(first.users_), m._item_codes(first.items_))
            for m in members
        ]
        cold = np.full(len(self.items_), -1, dtype=np.int64)
        fallback = self._predict_codes(cold, np.arange(len(self.items_)))
        self.item_bias_ = (fallback - self.global_mean_).astype(np.float32)

    def _adopt_weights(self, members: list[Recommender]) -> None:
        self._adopt(members, self.weights_, float(self.intercept_))

    # ----------------------------------------------------------- prediction
    def _member_codes(self, j: int, u: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps = self._maps[j]
        if maps is None:
            return u, i
        umap, imap = maps
        return (
            np.where(u >= 0, umap[np.maximum(u, 0)], -1),
            np.where(i >= 0, imap[np.maximum(i, 0)], -1),
        )

    def _fwls_terms(self, nu: np.ndarray, ni: np.ndarray) -> tuple[list[Any], Any] | None:
        """Per-member weights and the free term at the given counts (None: a plain blend)."""
        V = getattr(self, "feature_weights_", None)
        if V is None:
            return None
        F = support_features(nu, ni)
        ws = [sum(V[j, f] * F[f] for f in range(N_FEATURES)) for j in range(len(V))]
        return ws, sum(self.feature_intercepts_[f] * F[f] for f in range(N_FEATURES))

    def _predict_codes(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.int64)
        i = np.asarray(i, dtype=np.int64)
        terms = self._fwls_terms(*_counts(self, u, i))
        out = np.full(u.shape, self.intercept_, dtype=np.float64) if terms is None else terms[1]
        for j, (m, w) in enumerate(zip(self.members_, self.weights_, strict=True)):
            if terms is None and w == 0.0:
                continue
            mu, mi = self._member_codes(j, u, i)
            wj = w if terms is None else terms[0][j]
            out = out + wj * m._clip(m._predict_codes(mu, mi)).astype(np.float64)
        return np.asarray(out, dtype=np.float32)

    def _score_users(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.int64)
        nu = self.user_counts_[u][:, None]
        terms = self._fwls_terms(nu, np.asarray(self.item_counts_)[None, :])
        if terms is None:
            out = np.full((len(u), len(self.items_)), self.intercept_, dtype=np.float32)
        else:
            out = terms[1].astype(np.float32)
        for j, (m, w) in enumerate(zip(self.members_, self.weights_, strict=True)):
            if terms is None and w == 0.0:
                continue
            maps = self._maps[j]
            if maps is None:
                s = m._score_users(u)
            else:
                umap, imap = maps
                mu = umap[u]
                warm = mu >= 0
                own = np.empty((len(u), len(m.items_)), dtype=np.float32)
                if warm.any():
                    own[warm] = m._score_users(mu[warm])
                own[~warm] = (m.global_mean_ + m.item_bias_).astype(np.float32)
                # Items this member never saw: its fallback for each user.
                fb = m._predict_codes(mu, np.full(len(u), -1, dtype=np.int64))
                s = np.where(imap[None, :] >= 0, own[:, np.maximum(imap, 0)], fb[:, None])
            wj = np.float32(w) if terms is None else terms[0][j].astype(np.float32)
            out += wj * m._clip(s)
        return out

    # ---------------------------------------------------- persistence hooks
    def _store_variables(self) -> dict[str, Any]:
        out: dict[str, Any] = {"weights": self._weights_variable()}
        if getattr(self, "feature_weights_", None) is not None:
            out["feature_weights"] = (("member", "feature"), self.feature_weights_)
            out["feature_intercepts"] = (("feature",), self.feature_intercepts_)
        return out

    def _restore_store(self, ds: Any, read_child: Any) -> None:
        if "feature_weights" in ds:
            self.feature_weights_ = np.asarray(ds["feature_weights"].values, dtype=np.float64)
            self.feature_intercepts_ = np.asarray(ds["feature_intercepts"].values, np.float64)
        self._restore_members(ds, read_child)

    # --------------------------------------------------------------- fold-in
    def fold_in(self, new_ratings: Any, *, unknown_items: str = "raise") -> Blend:
        """Fold the users of ``new_ratings`` into every member; same weights.

        Examples
        --------
        >>> import dmf, pandas as pd
        >>> from dmf.testing import random_ratings
        >>> r = random_ratings(n_users=40, n_items=30, seed=2)
        >>> train, valid = dmf.split.random(r, test_size=0.25, seed=0)
        >>> model = dmf.blend([dmf.Baseline().fit(train)], validation=valid)
        >>> new = pd.DataFrame({"user": [1000], "item": [0], "rating": [5.0]})
        >>> int(model.fold_in(new).users_[-1])
        1000
        """
        members = [m.fold_in(new_ratings, unknown_items=unknown_items) for m in self.members_]
        new = Blend(self.method, self.alpha)
        new.history_ = list(self.history_)
        for name in ("feature_weights_", "feature_intercepts_"):
            if hasattr(self, name):
                setattr(new, name, getattr(self, name))
        new._adopt(members, self.weights_, self.intercept_)
        new.validation_rmse_ = getattr(self, "validation_rmse_", float("nan"))
        new.fold_in_report_ = members[0].fold_in_report_
        return new


def _rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def blend(
    models: Any,
    validation: Any,
    method: str = "nnls",
    alpha: float = 1.0,
    *,
    objective: str | None = None,
    train: Any = None,
    relevance_threshold: float | None = None,
) -> Any:
    """Blend fitted models linearly with weights fitted on a validation set.

    With ``objective=None`` (default) the blend predicts ratings: least squares
    on the validation ratings (:class:`dmf.Blend`). With a ranking objective
    (``objective="ndcg@10"``) it ranks: the members' per-user standardised
    scores, weighted to maximise that metric on ``validation`` with ``train``
    masked (:class:`dmf.RankBlend`; ``method`` and ``alpha`` do not apply).

    Parameters
    ----------
    models : list of fitted dmf models
        Trained on data that excludes ``validation``.
    validation : Ratings or pandas.DataFrame
        Held-out ratings (``user``, ``item``, ``rating``).
    method : {"nnls", "ridge", "fwls"}
        Non-negative weights (default), ridge-penalised weights (both with a
        free intercept), or feature-weighted linear stacking: weights that
        depend on the user's and item's training support.
    alpha : float
        Ridge penalty (``method="ridge"``).
    objective : str, optional
        A ranking metric with a cut-off to blend for (``"ndcg@10"``).
    train : Ratings or pandas.DataFrame, optional
        The members' training data, masked while a ranking blend is weighted.
    relevance_threshold : float, optional
        Relevant validation ratings for a ranking objective (as in ``dmf.evaluate``).

    Returns
    -------
    Blend or RankBlend
        A fitted model: ``predict``, ``recommend``, ``dmf.evaluate``,
        ``save``/``dmf.load``, ``fold_in``.

    Examples
    --------
    >>> import dmf
    >>> ratings = dmf.testing.random_ratings(n_users=40, n_items=30, seed=2)
    >>> train, valid = dmf.split.random(ratings, test_size=0.25, seed=0)
    >>> members = [dmf.Baseline(reg_user=r, reg_item=r).fit(train) for r in (0, 5, 50)]
    >>> model = dmf.blend(members, validation=valid, method="ridge")
    >>> len(model.weights_), type(model).__name__
    (3, 'Blend')
    """
    if objective is not None:
        rb = RankBlend(objective=objective, relevance_threshold=relevance_threshold)
        return rb.fit(models, validation, train)
    return Blend(method=method, alpha=alpha).fit(models, validation)
