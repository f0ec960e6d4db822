"""Evaluation of a fitted model on held-out ratings, as blocked Dask graphs.

Each block of the test matrix becomes one ``eval-block`` task returning partial
sums and counts; one small reduction merges them at the end.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf._base import COLD_START, Recommender
from dmf._blocks import RowBlock
from dmf._compute import key, tree_reduce
from dmf._errors import ParameterError, RatingsError, check_choice
from dmf._ratings import Ratings

__all__ = ["align", "evaluate", "to_ratings"]

#: Error metrics on rating predictions.
ERROR_METRICS = ("rmse", "mae")


def to_ratings(
    data: Any, user: Any = "user", item: Any = "item", rating: Any = "rating", name: str = "test"
) -> Ratings:
    """Accept a Ratings or a pandas DataFrame (built with the default policies)."""
    from dmf._io import from_pandas

    if isinstance(data, Ratings):
        return data
    if isinstance(data, pd.DataFrame):
        return from_pandas(data, user=user, item=item, rating=rating)
    raise RatingsError(
        f"{name} must be a dmf.Ratings or a pandas DataFrame, got {type(data).__name__}"
    )


def align(model: Recommender, ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Model codes for ``ratings``' user and item codes (``-1``: unseen in training).

    Works whether ``ratings`` shares the model's id maps (a split) or has its own
    (a second file): the lookup is by original id, once per id, not per rating.
    """
    return model._user_codes(ratings.users), model._item_codes(ratings.items)


def _error_partial(
    block: RowBlock,
    model: Recommender,
    umap: np.ndarray,
    imap: np.ndarray,
    cold_start: str,
    clip: bool,
) -> dict[str, float]:
    u = umap[block.user_codes()]
    i = imap[block.cols]
    cold = (u < 0) | (i < 0)
    pred = model._predict_codes(u, i)
    if clip:
        pred = model._clip(pred)
    err = pred.astype(np.float64) - block.data
    if cold_start == "nan":
        err = err[~cold]
    return {
        "sse": float(np.dot(err, err)),
        "sae": float(np.abs(err).sum()),
        "n": float(err.shape[0]),
        "n_cold": float(cold.sum()),
    }


def _add_dicts(*parts: dict[str, float]) -> dict[str, float]:
    return {k: sum(p[k] for p in parts) for k in parts[0]}


def _parse_metrics(metrics: Any) -> list[str]:
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        metrics = list(metrics)
    except TypeError as e:
        raise ParameterError(f"metrics must be a list of names, got {metrics!r}") from e
    if not metrics:
        raise ParameterError("metrics is empty: name at least one, e.g. ['rmse']")
    unknown = [m for m in metrics if not isinstance(m, str) or m.lower() not in ERROR_METRICS]
    if unknown:
        raise ParameterError(f"unknown metric(s) {unknown}; known: {', '.join(ERROR_METRICS)}")
    return [m.lower() for m in metrics]


def evaluate(
    model: Recommender,
    test: Any,
    metrics: Any = ("rmse", "mae"),
    *,
    cold_start: str = "baseline",
    clip: bool = True,
    user: Any = "user",
    item: Any = "item",
    rating: Any = "rating",
    compute: bool = True,
) -> Any:
    """Score a fitted model on held-out ratings.

    Parameters
    ----------
    model : fitted dmf model
    test : Ratings or pandas.DataFrame
        Held-out ratings. A DataFrame (columns named by ``user``, ``item``,
        ``rating``) or a Ratings with its own id maps is aligned to the model
        by original id.
    metrics : list of str
        ``"rmse"``: :math:`\\sqrt{\\frac{1}{n}\\sum (\\hat r - r)^2}`;
        ``"mae"``: :math:`\\frac{1}{n}\\sum |\\hat r - r|`.
    cold_start : {"baseline", "nan", "raise"}
        Test ratings of users/items unseen in training: predicted by the bias
        fallback (default), left out of the metrics (``"nan"``), or an error.
        Either way their number is returned as ``"n_cold"``.
    clip : bool
        Clip predictions to the training rating scale (default).
    compute : bool
        ``False`` returns a lazy ``dask.delayed`` object instead of the dict.

    Returns
    -------
    dict
        ``{metric: value, ..., "n": ratings scored, "n_cold": cold-start ratings}``.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> train = dmf.from_pandas(pd.DataFrame(
    ...     {"user": [1, 1, 2, 2], "item": [1, 2, 1, 2], "rating": [4.0, 2.0, 4.0, 2.0]}))
    >>> model = dmf.Baseline(reg_user=0, reg_item=0).fit(train)
    >>> test = pd.DataFrame({"user": [1], "item": [1], "rating": [5.0]})
    >>> dmf.evaluate(model, test, metrics=["rmse", "mae"])
    {'rmse': 1.0, 'mae': 1.0, 'n': 1, 'n_cold': 0}
    """
    if not isinstance(model, Recommender):
        raise ParameterError(f"model must be a fitted dmf model, got {type(model).__name__}")
    model._check_fitted()
    names = _parse_metrics(metrics)
    check_choice("cold_start", cold_start, COLD_START)
    test = to_ratings(test, user, item, rating)
    if test.nnz == 0:
        raise RatingsError("the test set is empty: 0 ratings")
    umap, imap = align(model, test)
    if cold_start == "raise":
        cold_u = test.user_counts[umap < 0].sum()
        cold_i = test.item_counts[imap < 0].sum()
        if cold_u or cold_i:
            from dmf._errors import UnknownIdError

            raise UnknownIdError(
                f"the test set has {int((umap < 0).sum())} user(s) ({int(cold_u)} ratings) and "
                f"{int((imap < 0).sum())} item(s) ({int(cold_i)} ratings) unseen in training; "
                "use cold_start='baseline' or 'nan'"
            )
    if not ((umap >= 0).any() and (imap >= 0).any()):
        raise RatingsError(
            "the test set shares no user or no item with the training data: "
            f"{test.n_users} test users, {test.n_items} test items, none known to the model"
        )
    d_model = dask.delayed(model, pure=True)
    d_umap = dask.delayed(umap, pure=True)
    d_imap = dask.delayed(imap, pure=True)
    parts = [
        dask.delayed(_error_partial)(
            b,
            d_model,
            d_umap,
            d_imap,
            cold_start,
            clip,
            dask_key_name=key("eval-block", b.key, d_model.key, cold_start, clip),
        )
        for b in test.blocks
    ]
    total = tree_reduce(_add_dicts, parts, "eval-reduce")
    result = dask.delayed(_finish)(total, names)
    return result.compute() if compute else result


def _finish(total: dict[str, float], names: list[str]) -> dict[str, Any]:
    n = total["n"]
    out: dict[str, Any] = {}
    for m in names:
        if n == 0:
            out[m] = float("nan")
        elif m == "rmse":
            out[m] = float(np.sqrt(total["sse"] / n))
        elif m == "mae":
            out[m] = float(total["sae"] / n)
    out["n"] = int(n)
    out["n_cold"] = int(total["n_cold"])
    return out
