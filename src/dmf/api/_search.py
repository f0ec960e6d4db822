"""Cross-validation and grid search: every (parameters, fold) fit as a task of one Dask graph.

:func:`dmf.split.kfold` cuts the ratings into folds (persisted row blocks).
Each (parameter set, fold) pair becomes one ``cv-fit-evaluate`` task whose
inputs are that fold's train and test row blocks; the task rebuilds the two
:class:`dmf.Ratings` around them, fits the model and evaluates it *inside the
task* on Dask's synchronous scheduler, and returns a small dict of metrics. The
graph of all fits is computed at once: on the threaded scheduler the fits run
on its thread pool; on a distributed ``Client`` they spread over the workers,
each fold's blocks moving to where its fits run.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf._errors import ParameterError, check_int
from dmf.api._fit import fit, make_estimator
from dmf.data._io import to_ratings
from dmf.data._ratings import Ratings, check_ratings
from dmf.data._split import kfold
from dmf.engine._compute import key
from dmf.evaluation._metrics import _parse_metrics, evaluate

__all__ = ["cross_validate", "grid_search"]

_LOCK = threading.Lock()
_DEPTH = [0, None]  # tasks inside _local_scheduler in this process, saved setting


@contextlib.contextmanager
def _local_scheduler() -> Iterator[None]:
    """Make nested ``dask.compute`` calls run synchronously in this task's thread.

    Dask's configuration is process-wide, so concurrent tasks of one process
    share one setting: the first to enter sets ``scheduler="sync"``, the last
    to leave restores what was there. Without it, a task on a distributed
    worker would send its inner graphs back to the cluster from a worker thread.
    """
    with _LOCK:
        if _DEPTH[0] == 0:
            _DEPTH[1] = dask.config.get("scheduler", None)
            dask.config.set(scheduler="sync")
        _DEPTH[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH[0] -= 1
            if _DEPTH[0] == 0:
                dask.config.set(scheduler=_DEPTH[1])


def _meta(r: Ratings) -> dict[str, Any]:
    return {
        "row_edges": r.row_edges,
        "users": r.users,
        "items": r.items,
        "has_timestamps": r.has_timestamps,
        "rating_scale": r.rating_scale,
        "implicit": r.implicit,
    }


def _rebuild(blocks: list[Any], meta: dict[str, Any]) -> Ratings:
    delayed = [dask.delayed(b) for b in blocks]
    return Ratings(
        delayed,
        meta["row_edges"],
        meta["users"],
        meta["items"],
        has_timestamps=meta["has_timestamps"],
        rating_scale=meta["rating_scale"],
        implicit=meta["implicit"],
    )


def _fit_evaluate(
    train_blocks: list[Any],
    test_blocks: list[Any],
    train_meta: dict[str, Any],
    test_meta: dict[str, Any],
    method: str,
    params: dict[str, Any],
    metrics: list[str],
    relevance_threshold: float | None,
    ranking: bool,
) -> dict[str, Any]:
    """Fit one model on one fold and evaluate it; runs as a single task."""
    with _local_scheduler():
        train = _rebuild(train_blocks, train_meta)
        test = _rebuild(test_blocks, test_meta)
        t0 = time.perf_counter()
        model = fit(train, method=method, **params)
        t1 = time.perf_counter()
        scores = evaluate(
            model,
            test,
            metrics,
            train=train if ranking else None,
            relevance_threshold=relevance_threshold,
        )
        t2 = time.perf_counter()
    return {**scores, "fit_seconds": t1 - t0, "eval_seconds": t2 - t1}


def _check_method(method: Any) -> type:
    return type(make_estimator(method, {})[0])


def _check_params(cls: type, method: str, params: dict[str, Any]) -> None:
    """Unknown names or bad values fail here, before any task is submitted."""
    est, _ = make_estimator(method, params)
    validate = getattr(est, "_validate_params", None)
    if validate is not None:
        validate()


def _with_seed(cls: type, params: dict[str, Any], seed: int) -> dict[str, Any]:
    # estimators that take a seed get the search's seed unless one is given
    if "seed" in cls._param_names() and "seed" not in params:
        return {**params, "seed": seed}
    return dict(params)


def _run(
    ratings: Any,
    method: str,
    param_sets: list[dict[str, Any]],
    folds: int,
    metrics: list[str],
    seed: int,
    relevance_threshold: float | None,
) -> list[list[dict[str, Any]]]:
    """Fit and evaluate every parameter set on every fold: results[p][f]."""
    splits = kfold(ratings, folds, seed)
    _, ranking = _parse_metrics(metrics)
    tasks = []
    for p in param_sets:
        row = []
        for f, (train, test) in enumerate(splits):
            row.append(
                dask.delayed(_fit_evaluate, pure=True)(
                    train.blocks,
                    test.blocks,
                    _meta(train),
                    _meta(test),
                    method,
                    p,
                    metrics,
                    relevance_threshold,
                    bool(ranking),
                    dask_key_name=key(
                        "cv-fit-evaluate",
                        [b.key for b in train.blocks],
                        [b.key for b in test.blocks],
                        method,
                        sorted(p.items(), key=lambda kv: kv[0]),
                        metrics,
                        relevance_threshold,
                        f,
                    ),
                )
            )
        tasks.append(row)
    return list(dask.compute(tasks)[0])


def cross_validate(
    ratings: Ratings,
    method: str = "baseline",
    folds: int = 5,
    metrics: Any = ("rmse", "mae"),
    seed: int = 0,
    *,
    relevance_threshold: float | None = None,
    **params: Any,
) -> pd.DataFrame:
    """K-fold cross-validation: every fold fitted and evaluated concurrently as one Dask graph.

    The folds come from :func:`dmf.split.kfold` (``folds`` parts, seeded by
    ``seed``); fold *f* trains on the other parts and is evaluated on part *f*
    with :func:`dmf.evaluate` (ranking metrics mask each user's fold-training
    items). Each (fold) fit is one ``cv-fit-evaluate`` task; see
    :mod:`dmf.api._search` for how they run on threads or a distributed cluster.

    Parameters
    ----------
    ratings : dmf.Ratings
    method : str
        A ``dmf.METHODS`` name (``"baseline"``, ``"als"``, ``"sgd"``, ...).
    folds : int
        Number of folds (>= 2).
    metrics : list of str
        Any :func:`dmf.evaluate` metrics.
    seed : int
        Seeds the folds, and the estimator when it takes a ``seed`` and none is
        given in ``params``: the same seed gives the same table.
    relevance_threshold : float, optional
        Passed to :func:`dmf.evaluate` for ranking metrics.
    **params
        Hyper-parameters of the estimator (and keyword arguments of its ``fit``).

    Returns
    -------
    pandas.DataFrame
        One row per fold (index ``0 .. folds-1``) with each metric, the counts
        :func:`dmf.evaluate` returns, ``fit_seconds`` and ``eval_seconds``;
        then rows ``"mean"`` and ``"std"`` (sample standard deviation over folds).

    Examples
    --------
    >>> import dmf
    >>> r = dmf.testing.random_ratings(n_users=60, n_items=40)
    >>> cv = dmf.cross_validate(r, method="baseline", folds=3, metrics=["rmse"], seed=0)
    >>> list(cv.index)
    [0, 1, 2, 'mean', 'std']
    >>> bool(cv.loc["mean", "rmse"] > 0)
    True
    """
    ratings = check_ratings(to_ratings(ratings, name="ratings"))
    cls = _check_method(method)
    folds = check_int("folds", folds, 2)
    seed = check_int("seed", seed, 0)
    names = list(_as_list(metrics))
    _parse_metrics(names)
    _check_params(cls, method, params)
    results = _run(
        ratings, method, [_with_seed(cls, params, seed)], folds, names, seed, relevance_threshold
    )[0]
    table = pd.DataFrame(results)
    table.index = pd.Index(list(range(folds)), dtype=object, name="fold")
    numeric = table.select_dtypes("number")
    summary = pd.DataFrame([numeric.mean(), numeric.std(ddof=1)], index=["mean", "std"])
    return pd.concat([table, summary])


def _as_list(metrics: Any) -> list[Any]:
    if isinstance(metrics, str):
        return [metrics]
    try:
        return list(metrics)
    except TypeError as e:
        raise ParameterError(f"metrics must be a list of names, got {metrics!r}") from e


def _grid(params: Any) -> list[dict[str, Any]]:
    if not isinstance(params, dict) or not params:
        raise ParameterError(
            f"params must be a non-empty dict of name -> list of values, got {params!r}"
        )
    names, values = [], []
    for name, vals in params.items():
        if isinstance(vals, (str, bytes)) or not hasattr(vals, "__iter__"):
            raise ParameterError(f"params[{name!r}] must be a list of values to try, got {vals!r}")
        vals = list(vals)
        if not vals:
            raise ParameterError(f"params[{name!r}] is empty: give at least one value")
        names.append(name)
        values.append(vals)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def grid_search(
    ratings: Ratings,
    method: str = "baseline",
    params: dict[str, Any] | None = None,
    folds: int = 3,
    metric: str = "rmse",
    seed: int = 0,
    *,
    relevance_threshold: float | None = None,
    **fixed: Any,
) -> pd.DataFrame:
    """Grid search by k-fold cross-validation: all (parameters x folds) fits as one Dask graph.

    Every combination of ``params`` is fitted on every fold of
    :func:`dmf.split.kfold` (``folds``, ``seed``) and scored on the held-out
    part with ``metric``; the fits are tasks of one graph computed at once, so
    they run concurrently (spread over workers on a distributed ``Client``).

    Parameters
    ----------
    ratings : dmf.Ratings
    method : str
        A ``dmf.METHODS`` name.
    params : dict of str -> list
        Values to try per hyper-parameter; the grid is their cross product.
    folds : int
        Number of folds (>= 2).
    metric : str
        The :func:`dmf.evaluate` metric to rank by: lower is better for
        ``"rmse"``/``"mae"``, higher for ranking metrics.
    seed : int
        Seeds the folds (and estimators that take a ``seed``).
    relevance_threshold : float, optional
        For ranking metrics, as in :func:`dmf.evaluate`.
    **fixed
        Hyper-parameters held fixed for every fit.

    Returns
    -------
    pandas.DataFrame
        One row per parameter combination, best first: the parameter columns,
        ``<metric>_mean``, ``<metric>_std``, ``<metric>_fold<i>`` per fold,
        ``fit_seconds`` (mean per fit) and ``rank`` (1 = best; named
        ``rank_<metric>`` when ``rank`` is a searched hyper-parameter). ``attrs``
        holds ``"best_params"`` (a dict) and ``"metric"``.

    Examples
    --------
    >>> import dmf
    >>> r = dmf.testing.random_ratings(n_users=60, n_items=40)
    >>> best = dmf.grid_search(r, method="baseline", params={"reg_user": [0, 15]},
    ...                        folds=2, metric="rmse", seed=0)
    >>> sorted(best.attrs["best_params"])
    ['reg_user']
    >>> best["rank"].tolist()
    [1, 2]
    """
    ratings = check_ratings(to_ratings(ratings, name="ratings"))
    cls = _check_method(method)
    folds = check_int("folds", folds, 2)
    seed = check_int("seed", seed, 0)
    if not isinstance(metric, str):
        raise ParameterError(f"metric must be one metric name, got {metric!r}")
    errors, _ = _parse_metrics([metric])
    metric = metric.lower()
    grid = _grid(params)
    overlap = set(fixed) & set(grid[0])
    if overlap:
        raise ParameterError(f"parameter(s) {sorted(overlap)} are both searched and fixed")
    sets = [{**fixed, **p} for p in grid]
    for p in sets:
        _check_params(cls, method, p)
    results = _run(
        ratings,
        method,
        [_with_seed(cls, p, seed) for p in sets],
        folds,
        [metric],
        seed,
        relevance_threshold,
    )
    rows = []
    for i, (p, res) in enumerate(zip(grid, results, strict=True)):
        vals = np.array([r[metric] for r in res], dtype=np.float64)
        row: dict[str, Any] = dict(p)
        row[f"{metric}_mean"] = float(vals.mean())
        row[f"{metric}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        for f, v in enumerate(vals):
            row[f"{metric}_fold{f}"] = float(v)
        row["fit_seconds"] = float(np.mean([r["fit_seconds"] for r in res]))
        row["_grid"] = i
        rows.append(row)
    table = pd.DataFrame(rows)
    lower_better = bool(errors)
    table = table.sort_values(
        f"{metric}_mean", ascending=lower_better, kind="stable", na_position="last"
    ).reset_index(drop=True)
    # The position column is "rank" unless a hyper-parameter has that name (ALS/SGD rank).
    position = "rank" if "rank" not in table.columns else f"rank_{metric}"
    table[position] = np.arange(1, len(table) + 1)
    table.attrs["best_params"] = dict(grid[int(table.loc[0, "_grid"])])
    table = table.drop(columns=["_grid"])
    table.attrs["metric"] = metric
    return table
