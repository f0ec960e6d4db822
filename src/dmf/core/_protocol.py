"""The model protocol: what every fitted dmf model holds and how it scores.

Evaluation, serving and the store work on this protocol, never on the model
classes: they live in layers below :mod:`dmf.models`.

Every model predicts ``mu + b_u + b_i (+ u . v)``. Estimators store their
hyper-parameters in ``__init__``; ``fit`` sets the fitted state (names end in
``_``) and returns ``self``. The small model interface that evaluation,
recommendation and persistence use is:

- ``_user_codes(ids)`` / ``_item_codes(ids)``: model codes of original ids,
  ``-1`` for ids unseen in training;
- ``_predict_codes(u, i)``: raw float32 predictions for code pairs (unknown
  codes fall back to the biases);
- ``_score_users(u)``: dense scores of a block of known users against all items.
"""

from __future__ import annotations

import inspect
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import pandas as pd

from dmf._errors import NotFittedError, ParameterError, UnknownIdError, check_choice, first_rows
from dmf.core import _registry
from dmf.core._lazy import item_side, lazy_model, take
from dmf.engine import _progress
from dmf.engine._faults import guard_fit
from dmf.kernels._ranking import score_few

__all__ = ["COLD_START", "FittedModel"]

#: Up to this many users, ``_score_users`` multiplies on one thread (numba), not BLAS.
_FEW_USERS = 8

#: Policies for users/items unseen in training.
COLD_START = ("baseline", "nan", "raise")


class FittedModel:
    """Parameters, fitted state and scoring shared by every dmf model.

    :class:`dmf.Recommender` adds the user-facing methods (``recommend``,
    ``save``, ``fold_in``, ...) on top; model kinds subclass that.
    The fitted attributes are listed on :class:`dmf.Recommender`.
    """

    #: Short name used by ``dmf.fit(method=...)`` and stored with saved models.
    kind = "base"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            _registry.register(cls.kind, cls)  # the store finds classes here, by kind
        # Every fit runs in a session: dashboard link once, progress closed at the end.
        # A lost cluster ends the fit in a dmf.ClusterError (see dmf.engine._faults).
        if "fit" in cls.__dict__:
            cls.fit = guard_fit(_progress.wrap_fit(cls.__dict__["fit"]))

    # ----------------------------------------------------------- parameters
    #: Constructor arguments kept one release under an old name (not parameters).
    _deprecated: tuple[str, ...] = ()

    @classmethod
    def _param_names(cls, deprecated: bool = False) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self"
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and (deprecated or p.name not in cls._deprecated)
        ]

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters, as passed to ``__init__``.

        Examples
        --------
        >>> import dmf
        >>> dmf.Baseline(reg_user=5).get_params()
        {'reg_user': 5, 'reg_item': 10.0, 'max_iter': 10, 'verbose': False}
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> FittedModel:
        """Change hyper-parameters; unknown names are an error.

        Examples
        --------
        >>> import dmf
        >>> dmf.Baseline().set_params(max_iter=3)
        Baseline(reg_user=15.0, reg_item=10.0, max_iter=3, verbose=False)
        """
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(
                    f"{type(self).__name__} has no parameter {name!r}; it has {valid}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # --------------------------------------------------------- fitted state
    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "global_mean_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit first")

    def _set_training_state(self, ratings: Any) -> None:
        """Record what the fit saw: id maps, counts, mean, scale, data fingerprint."""
        self.users_ = ratings.users
        self.items_ = ratings.items
        # kept (a reference, not a copy) so that save can store what serving needs
        self._train_ratings = ratings
        self.user_counts_ = np.asarray(ratings.user_counts, dtype=np.int64)
        self.item_counts_ = np.asarray(ratings.item_counts, dtype=np.int64)
        self.global_mean_ = float(ratings.global_mean)
        self.rating_scale_ = tuple(float(v) for v in ratings.rating_scale)
        self.row_edges_ = np.asarray(ratings.row_edges, dtype=np.int64)
        self.train_info_ = {
            "n_users": int(ratings.n_users),
            "n_items": int(ratings.n_items),
            "nnz": int(ratings.nnz),
            "global_mean": float(ratings.global_mean),
            "implicit": bool(ratings.implicit),
        }
        self.history_: list[dict[str, Any]] = []
        # the model card (dmf info): where the data came from, when and by what it was fitted
        self.data_source_ = getattr(ratings, "source", None)
        self.fitted_at_ = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.dmf_version_ = _dmf_version()
        self._fit_started = time.perf_counter()

    @property
    def history(self) -> pd.DataFrame:
        """Per-iteration record of the fit (objective, validation metrics, seconds)."""
        self._check_fitted()
        return pd.DataFrame(self.history_)

    def _record(self, verbose: bool = False, **entry: Any) -> None:
        """Append one iteration to the history and, when ``verbose``, print it."""
        entry.setdefault("elapsed", time.perf_counter() - getattr(self, "_fit_started", 0.0))
        self.history_.append(entry)
        _progress.record(self, verbose, entry)  # a bar or a line per iteration, see _progress

    @property
    def user_factors(self) -> np.ndarray | None:
        return getattr(self, "user_factors_", None)

    @property
    def item_factors(self) -> np.ndarray | None:
        return getattr(self, "item_factors_", None)

    # ---------------------------------------------------------------- codes
    def _user_codes(self, users: Any) -> np.ndarray:
        """Model codes of original user ids; ``-1`` for ids unseen in training."""
        self._check_fitted()
        return _seen_codes(self.users_, self.user_counts_, users)

    def _item_codes(self, items: Any) -> np.ndarray:
        """Model codes of original item ids; ``-1`` for ids unseen in training."""
        self._check_fitted()
        return _seen_codes(self.items_, self.item_counts_, items)

    # ----------------------------------------------------------- prediction
    def _predict_codes(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Raw predictions ``mu + b_u + b_i + u . v`` for code pairs (``-1``: unknown).

        An unknown user contributes no bias and no factors, likewise an unknown
        item: the baseline fallback. Not clipped.
        """
        u = np.asarray(u, dtype=np.int64)
        i = np.asarray(i, dtype=np.int64)
        ku, ki = u >= 0, i >= 0
        uc, ic = np.where(ku, u, 0), np.where(ki, i, 0)
        pred = np.full(u.shape, self.global_mean_, dtype=np.float64)
        factors = self.user_factors is not None and self.item_factors is not None
        if lazy_model(self):  # fetch only the rows asked for (dmf.core._lazy)
            vf, vb = item_side(self)
            ub, uf = take([self.user_bias_, self.user_factors if factors else None], uc)
        else:
            vf, vb, ub, uf = self.item_factors, self.item_bias_, self.user_bias_[uc], None
        pred += np.where(ku, ub, 0.0)
        pred += np.where(ki, vb[ic], 0.0)
        if factors:
            both = ku & ki
            if both.any():
                rows = uf[both] if uf is not None else self.user_factors[uc[both]]
                pred[both] += np.einsum("ij,ij->i", rows, vf[ic[both]])
        return pred.astype(np.float32)

    def _score_users(self, u: np.ndarray) -> np.ndarray:
        """Dense ``(len(u), n_items)`` float32 scores of known users against every item."""
        u = np.asarray(u, dtype=np.int64)
        if self.user_factors is not None and self.item_factors is not None:
            # one GEMM adds the biases too: [p_u, mu + b_u, 1] . [q_i, 1, b_i], instead
            # of a product followed by two passes over the scores
            items = self._cached("augmented_items", self._augmented_items)
            users = np.empty((len(u), items.shape[1]), dtype=items.dtype)
            uf, ub = take([self.user_factors, self.user_bias_], u)
            users[:, :-2] = uf
            users[:, -2] = self.global_mean_ + ub
            users[:, -1] = 1.0
            if len(u) <= _FEW_USERS and items.dtype == np.float32:
                return score_few(users, items)  # BLAS threads cost more than they give here
            return (users @ items.T).astype(np.float32, copy=False)
        scores = np.empty((len(u), len(self.items_)), dtype=np.float32)
        scores[:] = item_side(self)[1][None, :]
        (ub,) = take([self.user_bias_], u)
        scores += (self.global_mean_ + ub)[:, None].astype(np.float32)
        return scores

    def _augmented_items(self) -> np.ndarray:
        f, b = item_side(self)
        dtype = np.result_type(f.dtype, np.float32)
        out = np.empty((f.shape[0], f.shape[1] + 2), dtype=dtype)
        out[:, :-2] = f
        out[:, -2] = 1.0
        out[:, -1] = b
        return out

    def _cached(self, name: str, build: Any) -> Any:
        """A value derived from the fitted arrays, rebuilt when any of them is replaced.

        Lives in ``_rec_cache`` (dropped on pickling). Fitted arrays are replaced,
        never modified in place, by ``fit``; code that edits them in place must
        ``del model._rec_cache``.
        """
        state = tuple(
            getattr(self, a, None)
            for a in ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "item_counts_")
        )
        cache = self.__dict__.get("_rec_cache")
        if cache is None or any(a is not b for a, b in zip(cache["state"], state, strict=True)):
            cache = {"state": state}
            self.__dict__["_rec_cache"] = cache
        if name not in cache:
            cache[name] = build()
        return cache[name]

    def _clip(self, pred: np.ndarray) -> np.ndarray:
        lo, hi = self.rating_scale_
        if np.isfinite(lo) and np.isfinite(hi):
            np.clip(pred, lo, hi, out=pred)
        return pred

    def predict(
        self,
        users: Any,
        items: Any = None,
        *,
        cold_start: str = "baseline",
        clip: bool = True,
        user: str = "user",
        item: str = "item",
    ) -> Any:
        """Predicted ratings for pairs of original ids, or for a DataFrame's pairs.

        Parameters
        ----------
        users, items : array-like
            Original ids, one pair per position (a scalar is broadcast). Or
            ``users`` a pandas DataFrame and ``items`` omitted: its ``user`` and
            ``item`` columns are the pairs, and a copy of it comes back with a
            ``prediction`` column (as Spark's ``ALSModel.transform``).
        cold_start : {"baseline", "nan", "raise"}
            Ids unseen in training: ``"baseline"`` (default) falls back to the
            global mean plus whatever biases are known (user bias if only the
            item is new, item bias if only the user is new); ``"nan"`` returns
            NaN for those pairs; ``"raise"`` raises :class:`dmf.UnknownIdError`
            naming how many ids are unknown and the first ones.
        clip : bool
            Clip predictions to the training data's rating scale (default).

        Returns
        -------
        numpy.ndarray of float32, or pandas.DataFrame for a DataFrame

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> train = dmf.from_pandas(pd.DataFrame(
        ...     {"user": [1, 1, 2], "item": [1, 2, 1], "rating": [5.0, 3.0, 4.0]}))
        >>> model = dmf.Baseline(reg_user=0, reg_item=0, max_iter=1).fit(train)
        >>> model.predict([1, 2], [2, 2])  # 4 + 0.25 - 1; 4 - 0.5 - 1 clipped to the scale (3, 5)
        array([3.25, 3.  ], dtype=float32)
        >>> model.predict(99, 1, cold_start="nan")  # user 99 never seen in training
        array([nan], dtype=float32)
        >>> model.predict(pd.DataFrame({"user": [1], "item": [2]}))
           user  item  prediction
        0     1     2        3.25
        """
        self._check_fitted()
        if isinstance(users, pd.DataFrame) and items is None:
            missing = [c for c in (user, item) if c not in users.columns]
            if missing:
                raise ParameterError(
                    f"predict: the DataFrame lacks column(s) {missing} (it has "
                    f"{list(users.columns)}); name them with user=, item="
                )
            out = users.copy()
            out["prediction"] = self.predict(
                users[user].to_numpy(), users[item].to_numpy(), cold_start=cold_start, clip=clip
            )
            return out
        if items is None:
            raise ParameterError("predict needs items= (or a DataFrame of user, item pairs)")
        check_choice("cold_start", cold_start, COLD_START)
        users_a, items_a = _pairs(users, items)
        u = self._user_codes(users_a)
        i = self._item_codes(items_a)
        unknown = (u < 0) | (i < 0)
        if cold_start == "raise" and unknown.any():
            raise UnknownIdError(_unknown_message(users_a, u, items_a, i))
        pred = self._predict_codes(u, i)
        if clip:
            pred = self._clip(pred)
        if cold_start == "nan":
            pred[unknown] = np.nan
        return pred

    def __getstate__(self) -> dict[str, Any]:
        # caches of dmf.serving._recommend (exclusion lists, normalised factors) stay local
        state = self.__dict__.copy()
        state.pop("_rec_cache", None)
        state.pop("_train_ratings", None)  # never ship the training data with the model
        return state


def _dmf_version() -> str:
    try:
        return version("dask-mf")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _ids(x: Any) -> np.ndarray:
    """Ids as a 1-D array without coercing mixed lists (``[1, "a"]`` stays mixed)."""
    if isinstance(x, (pd.Index, pd.Series)):
        return x.to_numpy()
    if isinstance(x, np.ndarray):
        return x.ravel() if x.ndim else x.reshape(1)
    if isinstance(x, (str, bytes)) or np.isscalar(x) or x is None:
        out = np.empty(1, dtype=object)
        out[0] = x
        return out
    items = list(x)
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _pairs(users: Any, items: Any) -> tuple[np.ndarray, np.ndarray]:
    u, i = _ids(users), _ids(items)
    if len(u) == 1 and len(i) > 1:
        u = np.repeat(u, len(i))
    elif len(i) == 1 and len(u) > 1:
        i = np.repeat(i, len(u))
    if len(u) != len(i):
        raise ParameterError(f"users and items differ in length: {len(u)} vs {len(i)}")
    return u, i


def _seen_codes(index: pd.Index, counts: np.ndarray, ids: Any) -> np.ndarray:
    try:
        target = pd.Index(_ids(ids))
        if target.dtype == object:
            # [5] arrives as an object array: looking it up as object would convert
            # the whole index to object first; int stays int.
            target = target.infer_objects()
        codes = index.get_indexer(target)
    except (TypeError, ValueError) as e:
        raise ParameterError(f"ids cannot be looked up: {e}") from e
    codes = codes.astype(np.int64)
    known = codes >= 0
    codes[known & (counts[np.where(known, codes, 0)] == 0)] = -1
    return codes


def _unknown_message(users: np.ndarray, u: np.ndarray, items: np.ndarray, i: np.ndarray) -> str:
    bad_u = pd.unique(pd.Series(users[u < 0], dtype=object))
    bad_i = pd.unique(pd.Series(items[i < 0], dtype=object))
    parts = []
    if len(bad_u):
        parts.append(f"{len(bad_u)} user id(s) unseen in training (first: {first_rows(bad_u)})")
    if len(bad_i):
        parts.append(f"{len(bad_i)} item id(s) unseen in training (first: {first_rows(bad_i)})")
    n = int(((u < 0) | (i < 0)).sum())
    return (
        f"{n} pair(s) involve ids the model never saw: " + "; ".join(parts) + ". "
        "Use cold_start='baseline' for the bias fallback or 'nan'."
    )
