"""Fold-in: solve new or changed users against a fitted model's fixed items, no refit.

``model.fold_in(new_ratings)`` returns a new model in which every user of
``new_ratings`` has factors and bias solved from exactly those ratings with the
item side held fixed:

- factor models (ALS, SGD): the ALS user step (``dmf.serving._foldin.fold_in_users``):
  per user the regularised least-squares problem against the item factors;
- ``Baseline``: the closed-form user bias
  :math:`b_u = \\sum_{i \\in R(u)} (r_{ui} - \\mu - b_i) / (\\lambda_u + |R(u)|)`.

Users not in the model are appended (new codes after the existing ones);
users already in the model get their factors, bias and count replaced (the
model keeps no ratings, so pass a known user's whole current history). Items
the model never saw cannot be folded in: ``unknown_items="raise"`` (default)
is a :class:`dmf.RatingsError`, ``"ignore"`` drops those ratings and counts
them in the new model's ``fold_in_report_``.

The path is NumPy only (no Dask graph), so a handful of users takes
milliseconds. Appending users reuses spare rows of a growing buffer (amortised
O(new users)); replacing known users copies the user arrays (O(n_users)).
"""

from __future__ import annotations

import copy
import weakref
from typing import Any

import numpy as np
import pandas as pd

from dmf._errors import ParameterError, RatingsError, check_choice, first_rows
from dmf.core._lazy import is_lazy, item_side
from dmf.core._protocol import FittedModel
from dmf.data._blocks import CSR
from dmf.data._clean import bad_ids
from dmf.data._ratings import Ratings
from dmf.kernels._als_block import SolveConfig, solve_block

__all__ = ["fold_in", "fold_in_users", "user_step"]

_USER_ARRAYS = ("user_factors_", "user_bias_", "user_counts_")


class _Grow:
    """A buffer with spare rows, shared by a model and the models folded from it.

    Each model's array is a view of the buffer's first ``n`` rows. A fold-in
    appends in place at row ``n`` only when no live model uses rows past ``n``
    (``claims`` holds a weak reference per model that does); otherwise it
    copies first. So a stream of fold-ins, or repeated fold-ins from one base
    model whose results are dropped, costs O(new users), and no model ever
    sees its rows change.
    """

    def __init__(self, buffer: np.ndarray) -> None:
        self.buffer = buffer
        self.ptr = buffer.__array_interface__["data"][0]
        self.claims: list[tuple[int, weakref.ref]] = []

    def views(self, a: np.ndarray) -> bool:
        return (
            a.dtype == self.buffer.dtype
            and a.shape[1:] == self.buffer.shape[1:]
            and a.shape[0] <= self.buffer.shape[0]
            and (a.size == 0 or a.__array_interface__["data"][0] == self.ptr)
        )

    def free_after(self, n: int) -> bool:
        self.claims = [(m, r) for m, r in self.claims if r() is not None]
        return all(m <= n for m, _ in self.claims)


def _append_rows(
    grow: _Grow | None, a: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, _Grow]:
    """``(parent view, child array, buffer)``: ``a`` with ``rows`` appended."""
    n, k = a.shape[0], rows.shape[0]
    if grow is None or not grow.views(a) or grow.buffer.shape[0] < n + k or not grow.free_after(n):
        cap = max(2 * (n + k), 64)
        buf = np.empty((cap, *a.shape[1:]), dtype=a.dtype)
        buf[:n] = a
        grow = _Grow(buf)
        a = buf[:n]  # same values: the parent now views the buffer too
    grow.buffer[n : n + k] = rows
    return a, grow.buffer[: n + k], grow


def _lazy_update(a: Any, codes: np.ndarray, rows: np.ndarray) -> Any:
    """A Dask array ``a`` with known users' rows replaced and new users' rows appended."""
    import dask.array as da

    known = codes >= 0
    rows = rows.astype(a.dtype, copy=False)
    if known.any():
        a = a.copy()
        a[codes[known]] = rows[known]
    if (~known).any():
        new = rows[~known]
        a = da.concatenate([a, da.from_array(new, chunks=new.shape)], axis=0)
    return a


def _columns(new_ratings: Any, implicit: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``user, item, rating`` arrays of the new ratings, validated (nothing dropped silently).

    For an implicit model the rating column may be left out: each row is one
    interaction (value 1), as when the model was fitted without ratings.

    NumPy on the columns rather than DataFrame methods: this is the serving path.
    """
    if isinstance(new_ratings, Ratings):
        new_ratings = new_ratings.to_pandas()
    if not isinstance(new_ratings, pd.DataFrame):
        raise RatingsError(
            "new_ratings must be a dmf.Ratings or a pandas DataFrame with user, item, "
            f"rating columns, got {type(new_ratings).__name__}"
        )
    needed = ("user", "item") if implicit else ("user", "item", "rating")
    missing = [c for c in needed if c not in new_ratings.columns]
    if missing:
        raise RatingsError(
            f"new_ratings lacks column(s) {missing}; it has {list(new_ratings.columns)}"
        )
    if len(new_ratings) == 0:
        raise RatingsError("new_ratings is empty: 0 rows")
    users = new_ratings["user"].to_numpy()
    items = new_ratings["item"].to_numpy()
    if "rating" not in new_ratings.columns:
        rating = np.ones(len(new_ratings), dtype=np.float64)
    try:
        if "rating" in new_ratings.columns:
            rating = new_ratings["rating"].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise RatingsError(f"new_ratings' rating column is not numeric: {e}") from e
    for ids, what in ((users, "user"), (items, "item")):
        mask, why = bad_ids(ids)
        if mask.any():
            rows = np.flatnonzero(mask)
            raise RatingsError(
                f"new_ratings' {what} column has {len(rows)} id(s) that are {why} "
                f"(rows {first_rows(rows)})"
            )
    bad = ~np.isfinite(rating) | pd.isna(users) | pd.isna(items)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise RatingsError(
            f"new_ratings has {len(rows)} row(s) with a missing id or a NaN/inf rating "
            f"(rows {first_rows(rows)})"
        )
    return users, items, rating


def _check_unique_pairs(local: np.ndarray, items: np.ndarray) -> None:
    if len(local) < 2:
        return
    item_local, _ = pd.factorize(items)
    key = local.astype(np.int64) * (int(item_local.max()) + 1) + item_local
    if len(np.unique(key)) < len(key):
        rows = np.flatnonzero(pd.Series(key).duplicated(keep=False).to_numpy())
        raise RatingsError(
            f"new_ratings has {len(rows)} row(s) repeating a (user, item) pair "
            f"(rows {first_rows(rows)}); merge them first"
        )


def _baseline_users(model: FittedModel, csr: CSR) -> tuple[None, np.ndarray]:
    """Closed-form user biases against the fixed item biases (Baseline's user step)."""
    counts = np.diff(csr.indptr)
    rows = np.repeat(np.arange(csr.n_rows), counts)
    resid = csr.data.astype(np.float64) - model.global_mean_ - model.item_bias_[csr.indices]
    sums = np.bincount(rows, weights=resid, minlength=csr.n_rows)
    reg = float(getattr(model, "reg_user", 0.0))
    den = reg + counts
    out = np.zeros(csr.n_rows, dtype=np.float64)
    np.divide(sums, den, out=out, where=den > 0)
    return None, out


def fold_in_users(model: FittedModel, csr: CSR) -> tuple[np.ndarray, np.ndarray]:
    """Solve the rows of ``csr`` against a fitted model's fixed item factors and biases.

    The ALS user step, exact (Cholesky, or the NNLS solve for a non-negative
    model) and with the model's own regularisation, on NumPy only: no Dask, so
    a handful of users takes milliseconds. For a model fitted with
    ``solver="cholesky"`` a training user's own ratings give back its fitted
    factors (the last half-sweep of a fit solves the users).

    Parameters
    ----------
    model : fitted dmf model with item factors (``ALS`` or another factor model)
        Models without ALS hyper-parameters are solved with the ALS defaults
        (``reg`` 0.1, ALS-WR weighting) unless they define ``reg``.
    csr : dmf.data._blocks.CSR or scipy.sparse CSR array
        One row per user to solve; ``indices`` are the model's item codes.

    Returns
    -------
    (user_factors, user_bias) : numpy.ndarray
        ``(n_rows, rank)`` in the item factors' dtype and ``(n_rows,)`` float32
        (zeros for an implicit model). Rows with no ratings get zeros.

    Examples
    --------
    >>> import dmf
    >>> from dmf.testing import random_ratings
    >>> from dmf.serving._foldin import fold_in_users
    >>> train = random_ratings(n_users=30, n_items=20, seed=0)
    >>> model = dmf.ALS(rank=4, max_iter=3).fit(train)
    >>> x, b = fold_in_users(model, train.to_scipy()[[0, 1]])
    >>> bool(abs(x - model.user_factors_[:2]).max() < 1e-4)
    True
    """
    model._check_fitted()
    V, item_bias = item_side(model)  # read once per lazy model, then cached
    if V is None:
        raise ParameterError(f"fold_in_users needs a factor model, got {type(model).__name__}")
    indptr = np.asarray(csr.indptr, np.int64)
    indices = np.asarray(csr.indices, np.int32)
    data = np.asarray(csr.data, np.float32)
    n = len(indptr) - 1
    if indices.size and (indices.min() < 0 or indices.max() >= V.shape[0]):
        raise ParameterError(
            f"fold_in_users: item codes must lie in [0, {V.shape[0]}), got "
            f"{int(indices.min())}..{int(indices.max())}"
        )
    cfg = _solve_config(model)
    block = CSR(0, n, V.shape[0], indptr, indices, data)
    # YᵀY is the same for every call on this model: built once, rebuilt if the factors change
    gram = model._cached("fold_in_gram", lambda: _gram(V)) if cfg.implicit else None
    ibias = np.asarray(item_bias, V.dtype)
    warm = np.zeros((n, V.shape[1]), V.dtype) if cfg.nonnegative else None
    X, b, _, _ = solve_block(block, warm, None, V, ibias, gram, cfg, False)
    if b is None:
        b = np.zeros(n)
    return X, b.astype(np.float32)


def _gram(V: np.ndarray) -> np.ndarray:
    return V.T.astype(np.float64) @ V.astype(np.float64)


def _solve_config(model: FittedModel) -> SolveConfig:
    """The model's own solve settings (ALS), else the ALS-WR defaults with its ``reg``."""
    own = getattr(model, "_solve_config", None)
    if own is not None:
        return own()
    implicit = bool(getattr(model, "implicit", False))
    reg = float(getattr(model, "reg", 0.1))
    reg_bias = getattr(model, "reg_bias", None)
    weighted = getattr(model, "weighted_reg", None)
    weighted = (not implicit) if weighted is None else bool(weighted)
    return SolveConfig(
        implicit=implicit,
        reg=reg,
        reg_bias=reg if reg_bias is None else float(reg_bias),
        weighted=weighted,
        alpha=float(getattr(model, "alpha", 0.0)),
        reg_mode=int(weighted),
        nonnegative=bool(getattr(model, "nonnegative", False)),
        mu=float(model.global_mean_),
    )


def user_step(model: FittedModel) -> Any:
    """The model's own user step: ``csr -> (user_factors or None, user_bias)``.

    What :func:`fold_in` solves each user with; a server folding in one user at
    a time calls it directly.
    """
    custom = getattr(model, "_fold_in_users", None)
    if custom is not None:
        return custom
    if getattr(model, "user_factors_", None) is None:
        return lambda csr: _baseline_users(model, csr)
    return lambda csr: fold_in_users(model, csr)


def fold_in(model: FittedModel, new_ratings: Any, *, unknown_items: str = "raise") -> FittedModel:
    """A new model with the users of ``new_ratings`` solved against the fixed item side.

    Parameters
    ----------
    model : fitted dmf model
        Not modified.
    new_ratings : Ratings or pandas.DataFrame
        Columns ``user``, ``item``, ``rating``; each (user, item) pair once.
        Every user in it is (re)solved from exactly these ratings.
    unknown_items : {"raise", "ignore"}
        Ratings of items the model never saw in training: a
        :class:`dmf.RatingsError` naming them (default), or dropped and
        counted in ``fold_in_report_["ignored_ratings"]``.

    Returns
    -------
    FittedModel
        A new model of the same class: users not in ``model`` appended,
        known users' factors, biases and counts replaced. Its
        ``fold_in_report_`` says how many users were added and updated.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [4.0, 2.0, 5.0]})
    >>> model = dmf.Baseline(reg_user=0, reg_item=0, max_iter=1).fit(dmf.from_pandas(df))
    >>> new = pd.DataFrame({"user": [3, 3], "item": [1, 2], "rating": [5.0, 3.0]})
    >>> model2 = model.fold_in(new)
    >>> model2.fold_in_report_["users_added"], len(model2.users_)
    (1, 3)
    """
    if not isinstance(model, FittedModel):
        raise ParameterError(f"model must be a fitted dmf model, got {type(model).__name__}")
    model._check_fitted()
    check_choice("unknown_items", unknown_items, ("raise", "ignore"))
    implicit = bool(getattr(model, "implicit", False) or model.train_info_.get("implicit"))
    user_ids, item_ids, rating = _columns(new_ratings, implicit)
    local, uniq = pd.factorize(user_ids)  # users in first-appearance order
    _check_unique_pairs(local, item_ids)
    item_codes = model._item_codes(item_ids)
    unknown = item_codes < 0
    n_ignored = int(unknown.sum())
    if n_ignored:
        bad = pd.unique(pd.Series(item_ids[unknown], dtype=object))
        if unknown_items == "raise":
            raise RatingsError(
                f"new_ratings has {n_ignored} rating(s) of {len(bad)} item(s) the model never "
                f"saw in training (first: {first_rows(bad)}); fold-in keeps the items fixed: "
                "refit to add items, or pass unknown_items='ignore' to drop those ratings"
            )
        keep = ~unknown
        item_codes, rating = item_codes[keep], rating[keep]
        local, uniq = pd.factorize(user_ids[keep])
    ratings = rating.astype(np.float32)
    # an implicit model's values are confidences (counts), any value >= 0 as in its fit
    lo, hi = (0.0, np.inf) if implicit else model.rating_scale_
    out = (ratings < lo) | (ratings > hi)
    if out.any() and np.isfinite(lo) and (implicit or np.isfinite(hi)):
        rows = np.flatnonzero(out)
        raise RatingsError(
            f"new_ratings has {len(rows)} rating(s) outside the model's scale [{lo}, {hi}] "
            f"(first: {first_rows(ratings[rows])})"
        )
    try:
        codes = _user_lookup(model, uniq)
    except (TypeError, ValueError) as e:
        raise RatingsError(f"new_ratings' user ids cannot be matched to the model's: {e}") from e
    order = np.lexsort((item_codes, local))
    counts = np.bincount(local, minlength=len(uniq)).astype(np.int64)
    indptr = np.zeros(len(uniq) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    csr = CSR(
        start=0,
        stop=len(uniq),
        n_cols=len(model.items_),
        indptr=indptr,
        indices=item_codes[order].astype(np.int32),
        data=ratings[order],
    )
    factors, bias = user_step(model)(csr) if len(uniq) else (None, np.zeros(0))
    return _assemble(model, uniq, codes, counts, factors, bias, n_ignored)


def _append_ids(index: pd.Index, added: np.ndarray) -> pd.Index:
    """``index`` followed by ``added``, which must be ids of the same type."""
    numeric = index.dtype.kind in "iu"
    ok = [
        isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        if numeric
        else isinstance(v, str)
        for v in added
    ]
    if not all(ok):
        bad = [v for v, good in zip(added, ok, strict=True) if not good]
        kind = "integers" if numeric else "strings"
        raise RatingsError(
            f"{len(bad)} new user id(s) are not {kind} like the model's ids "
            f"(first: {first_rows(bad)})"
        )
    if numeric:
        return index.append(pd.Index(np.asarray(added, dtype=index.dtype)))
    return index.append(pd.Index(added.astype(str), dtype=index.dtype))


def _grow_ids(
    index: pd.Index, added: np.ndarray, grows: dict[str, _Grow], owner: FittedModel
) -> tuple[pd.Index, bool]:
    """Integer ids appended through a shared buffer (no O(n_users) copy in a stream)."""
    _append_ids(index[:0], added)  # type check only
    values = index.to_numpy()
    rows = np.asarray(added, dtype=index.dtype)
    parent_view, ids, grows["users_"] = _append_rows(grows.get("users_"), values, rows)
    grows["users_"].claims.append((len(ids), weakref.ref(owner)))
    return pd.Index(ids, copy=False), parent_view is not values


def _id_state(model: FittedModel) -> tuple[pd.Index, dict[Any, int], pd.Index]:
    """``(base index, {appended id: code}, users_)`` of a model built by fold-ins.

    Looking ids up in the base index (whose hash table is built once) plus a
    dict of the users fold-ins appended keeps a stream of fold-ins O(new users);
    a freshly appended Index would rebuild its hash table (O(n_users)) per call.
    """
    state = getattr(model, "_fold_ids", None)
    if state is None or state[2] is not model.users_:
        return model.users_, {}, model.users_
    return state


def _user_lookup(model: FittedModel, ids: Any) -> np.ndarray:
    base, extra, _ = _id_state(model)
    codes = base.get_indexer(pd.Index(ids)).astype(np.int64)
    if extra:
        for j in np.flatnonzero(codes < 0):
            codes[j] = extra.get(ids[j], -1)
    return codes


def _assemble(
    model: FittedModel,
    uniq: Any,
    codes: np.ndarray,
    counts: np.ndarray,
    factors: np.ndarray | None,
    bias: np.ndarray,
    n_ignored: int,
) -> FittedModel:
    new = copy.copy(model)
    grows: dict[str, _Grow] = dict(getattr(model, "_fold_grow", {}))
    values = {
        "user_bias_": np.asarray(bias, dtype=model.user_bias_.dtype),
        "user_counts_": counts.astype(model.user_counts_.dtype),
    }
    if factors is not None and model.user_factors_ is not None:
        values["user_factors_"] = np.asarray(factors, dtype=model.user_factors_.dtype)
    known = codes >= 0
    fresh = ~known
    parent_grows: dict[str, _Grow] = {}
    for name, rows in values.items():
        a = getattr(model, name)
        if is_lazy(a):  # rows on the workers or in a store: a new graph, nothing gathered
            setattr(new, name, _lazy_update(a, codes, rows))
            continue
        if known.any():
            a = a.copy()
            a[codes[known]] = rows[known]
            grows.pop(name, None)
        if fresh.any():
            parent_view, a, grows[name] = _append_rows(grows.get(name), a, rows[fresh])
            if not known.any() and parent_view is not getattr(model, name):
                # The parent's array moved into the new buffer (same values).
                setattr(model, name, parent_view)
                parent_grows[name] = grows[name]
            grows[name].claims.append((a.shape[0], weakref.ref(new)))
        setattr(new, name, a)
    if fresh.any():
        added = np.asarray(uniq, dtype=object)[fresh]
        if model.users_.dtype.kind in "iu":
            new.users_, moved = _grow_ids(model.users_, added, grows, new)
            if moved and not known.any():
                # The parent's ids now view the new buffer too (same values), so
                # the next fold-in from it appends in place; its lookups keep
                # using the original index (and its hash table) via _fold_ids.
                base, extra, _ = _id_state(model)
                model.users_ = pd.Index(grows["users_"].buffer[: len(model.users_)], copy=False)
                model._fold_ids = (base, extra, model.users_)
                parent_grows["users_"] = grows["users_"]
        else:
            new.users_ = _append_ids(model.users_, added)
        base, extra, _ = _id_state(model)
        extra = dict(extra)
        extra.update(zip(added.tolist(), range(len(model.users_), len(new.users_)), strict=True))
        new._fold_ids = (base, extra, new.users_)
    if parent_grows:
        model._fold_grow = {**getattr(model, "_fold_grow", {}), **parent_grows}
    new._fold_grow = grows
    new.history_ = list(model.history_)
    new.fold_in_report_ = {
        "users_added": int(fresh.sum()),
        "users_updated": int(known.sum()),
        "ratings": int(counts.sum()),
        "ignored_ratings": n_ignored,
    }
    return new
