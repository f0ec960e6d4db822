"""Evaluation of a fitted model on held-out ratings, as blocked Dask graphs.

Each block of the test matrix becomes one ``eval-block`` task (rating errors)
and, for ranking metrics, one ``eval-rank-block`` task (see :mod:`dmf.evaluation._ranking`)
returning partial sums and counts; one small reduction merges them at the end.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf._errors import (
    ParameterError,
    RatingsError,
    UnknownIdError,
    check_choice,
    check_float,
)
from dmf.core._lazy import lazy_model
from dmf.core._protocol import COLD_START, FittedModel
from dmf.data._blocks import RowBlock
from dmf.data._exclusions import exclusion_blocks
from dmf.data._io import to_ratings
from dmf.data._ratings import Ratings
from dmf.engine._compute import key, tree_reduce
from dmf.evaluation._beyond import beyond_inputs, popularity_model
from dmf.evaluation._ranking import (
    RANKING_METRICS,
    add_rank_partials,
    finish_ranking,
    parse_ranking_metric,
    rank_partial,
)
from dmf.evaluation._views import error_parts, rank_parts, views_of

__all__ = ["align", "evaluate", "to_ratings"]

#: ``baseline=`` choices: models every ranking metric is compared with.
BASELINES = ("popular",)

#: Error metrics on rating predictions.
ERROR_METRICS = ("rmse", "mae")


def align(model: FittedModel, ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """Model codes for ``ratings``' user and item codes (``-1``: unseen in training).

    Works whether ``ratings`` shares the model's id maps (a split) or has its own
    (a second file): the lookup is by original id, once per id, not per rating.
    """
    return model._user_codes(ratings.users), model._item_codes(ratings.items)


def _error_block(
    block: RowBlock,
    model: FittedModel,
    umap: np.ndarray,
    imap: np.ndarray,
    cold_start: str,
    clip: bool,
    per_user: bool,
) -> dict[str, float] | pd.DataFrame:
    """One test block's prediction errors: summed, or per test user (:func:`_per_user`)."""
    u = umap[block.user_codes()]
    i = imap[block.cols]
    cold = (u < 0) | (i < 0)
    pred = model._predict_codes(u, i)
    if clip:
        pred = model._clip(pred)
    err = pred.astype(np.float64) - block.data
    if per_user:
        return _per_user(block, err, cold, cold_start)
    if cold_start == "nan":
        err = err[~cold]
    return {
        # (not np.dot: a BLAS call leaves OpenBLAS's threads spinning for ~0.1 s,
        # which halved the speed of an SGD fit started right after an evaluate)
        "sse": float(np.square(err).sum()),
        "sae": float(np.abs(err).sum()),
        "n": float(err.shape[0]),
        "n_cold": float(cold.sum()),
    }


def _add_dicts(*parts: dict[str, float]) -> dict[str, float]:
    return {k: sum(p[k] for p in parts) for k in parts[0]}


def _parse_metrics(metrics: Any) -> tuple[list[str], list[tuple[str, str, int]]]:
    """Split metric names into error metrics and ranking (name, base, k) triples."""
    if isinstance(metrics, str):
        metrics = [metrics]
    try:
        metrics = list(metrics)
    except TypeError as e:
        raise ParameterError(f"metrics must be a list of names, got {metrics!r}") from e
    if not metrics:
        raise ParameterError("metrics is empty: name at least one, e.g. ['rmse']")
    errors: list[str] = []
    ranking: list[tuple[str, str, int]] = []
    unknown = []
    for m in metrics:
        if not isinstance(m, str):
            unknown.append(m)
            continue
        name = m.lower()
        parsed = parse_ranking_metric(name)
        if name in ERROR_METRICS:
            errors.append(name)
        elif parsed is not None:
            ranking.append((name, *parsed))
        else:
            unknown.append(m)
    if unknown:
        known = ", ".join((*ERROR_METRICS, *RANKING_METRICS))
        raise ParameterError(f"unknown metric(s) {unknown}; known: {known}")
    return errors, ranking


def _per_user(block: RowBlock, err: np.ndarray, cold: np.ndarray, cold_start: str) -> pd.DataFrame:
    """Per test user of one block: ratings scored, squared and absolute error sums."""
    rows = block.rows
    if cold_start == "nan":
        err, rows = err[~cold], rows[~cold]
    n = np.bincount(rows, minlength=block.n_rows)
    sse = np.bincount(rows, weights=err * err, minlength=block.n_rows)
    sae = np.bincount(rows, weights=np.abs(err), minlength=block.n_rows)
    has = np.bincount(block.rows, minlength=block.n_rows) > 0
    return pd.DataFrame(
        {
            "user": block.start + np.nonzero(has)[0],
            "n_ratings": n[has],
            "sse": sse[has],
            "sae": sae[has],
        }
    )


def evaluate(
    model: FittedModel,
    test: Any,
    metrics: Any = ("rmse", "mae"),
    *,
    train: Any = None,
    relevance_threshold: float | None = None,
    per_user: bool = False,
    baseline: str | None = None,
    cold_start: str = "baseline",
    clip: bool = True,
    user: Any = "user",
    item: Any = "item",
    rating: Any = "rating",
    compute: bool = True,
) -> Any:
    """Score a fitted model on held-out ratings: rating errors and ranking quality.

    Error metrics run as one ``eval-block`` task per test row block, ranking
    metrics as one ``eval-rank-block`` task per block (a dense block of users
    against all items, in chunks, never the full user x item matrix); each
    returns sums and counts and one small reduction merges them.

    Parameters
    ----------
    model : fitted dmf model
    test : Ratings or pandas.DataFrame
        Held-out ratings. A DataFrame (columns named by ``user``, ``item``,
        ``rating``) or a Ratings with its own id maps is aligned to the model
        by original id.
    metrics : list of str
        Error metrics: ``"rmse"`` :math:`\\sqrt{\\frac{1}{n}\\sum (\\hat r - r)^2}`,
        ``"mae"`` :math:`\\frac{1}{n}\\sum |\\hat r - r|`. Ranking metrics
        (``@k`` with an integer ``k >= 1``; several cut-offs may be mixed):
        ``"precision@k"``, ``"recall@k"``, ``"ndcg@k"``, ``"map@k"``,
        ``"mrr@k"``, ``"hit_rate@k"``, ``"coverage@k"`` and ``"auc"``, defined
        in ``docs/evaluation.md``: per user, the top k of the items seen in
        training minus the user's ``train`` items, against the user's relevant
        test items; NDCG uses the log2 discount with the ideal DCG over
        ``min(k, #relevant)`` ranks, MAP@k is normalised by ``min(k, #relevant)``;
        each is the mean over evaluated users, except coverage (distinct
        recommended items / items seen in training). Beyond accuracy:
        ``"novelty@k"`` (mean popularity rank of the recommended items, 1 =
        most interacted) and ``"diversity@k"`` (mean pairwise cosine distance
        of the recommended items' factors; factor models only).
    train : Ratings or pandas.DataFrame, optional
        The items to mask per user before ranking (normally the training set).
        Matched by original ids; may have its own id maps and row blocks.
        ``None`` masks nothing.
    relevance_threshold : float, optional
        Test ratings ``>=`` this are relevant; ``None`` (default) makes every
        test rating relevant. Implicit data: every interaction is relevant and
        a threshold is an error.
    baseline : {"popular"}, optional
        Also score popularity (items ranked by the model's own training counts,
        as ``dmf.Popular`` fitted on the same data) on the same test set and
        protocol, and report for each ranking metric ``m`` its value
        ``m_popular`` and the ratio ``m_lift`` (NaN when popularity scores 0).
        Diversity of the popular lists is measured on this model's factors.
    per_user : bool
        Return a DataFrame with one row per test user (index: original user
        id) instead of the averages: ``n_ratings``, ``rmse``/``mae`` of that
        user's ratings, ``n_relevant`` and each ranking metric (NaN where the
        user was skipped). Coverage, a catalogue figure, has no per-user value.
    cold_start : {"baseline", "nan", "raise"}
        Test ratings of users/items unseen in training: for error metrics
        predicted by the bias fallback (default) or left out (``"nan"``); either
        way counted as ``"n_cold"``. Ranking metrics always skip users unseen in
        training (counted as ``"n_users_skipped_cold"``) and never rank items
        unseen in training. ``"raise"`` makes any unseen id an error.
    clip : bool
        Clip predictions to the training rating scale (default).
    compute : bool
        ``False`` returns a lazy ``dask.delayed`` object instead of the result.

    Returns
    -------
    dict or pandas.DataFrame
        ``{metric: value, ...}`` plus counts: ``"n"`` (ratings scored) and
        ``"n_cold"`` with error metrics; ``"n_users"`` (users evaluated),
        ``"n_users_skipped_cold"``, ``"n_users_skipped_no_relevant"`` and
        ``"n_ratings_unseen_item"`` (test ratings of items unseen in training,
        never candidates) with ranking metrics. With ``per_user=True`` a DataFrame.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> train = dmf.from_pandas(pd.DataFrame(
    ...     {"user": [1, 1, 2, 2], "item": [1, 2, 1, 2], "rating": [4.0, 2.0, 4.0, 2.0]}))
    >>> model = dmf.Baseline(reg_user=0, reg_item=0).fit(train)
    >>> test = pd.DataFrame({"user": [1], "item": [1], "rating": [5.0]})
    >>> dmf.evaluate(model, test, metrics=["rmse", "mae"])
    {'rmse': 1.0, 'mae': 1.0, 'n': 1, 'n_cold': 0}
    >>> dmf.evaluate(model, test, metrics=["precision@1", "ndcg@2"])
    {'precision@1': 1.0, 'ndcg@2': 1.0, 'n_users': 1, 'n_users_skipped_cold': 0, \
'n_users_skipped_no_relevant': 0, 'n_ratings_unseen_item': 0}
    >>> out = dmf.evaluate(model, test, ["precision@1", "novelty@1"], baseline="popular")
    >>> out["novelty@1"], out["precision@1_popular"], out["precision@1_lift"]
    (1.0, 1.0, 1.0)
    """
    if not isinstance(model, FittedModel):
        raise ParameterError(f"model must be a fitted dmf model, got {type(model).__name__}")
    model._check_fitted()
    err_names, rank_wanted = _parse_metrics(metrics)
    check_choice("cold_start", cold_start, COLD_START)
    if not isinstance(per_user, bool):
        raise ParameterError(f"per_user must be True or False, got {per_user!r}")
    if baseline is not None:
        check_choice("baseline", baseline, BASELINES)
        if not rank_wanted or per_user:
            raise ParameterError(
                f"baseline={baseline!r} reports the lift of ranking metrics over averages: "
                "name at least one ranking metric (e.g. 'precision@10') and keep per_user=False"
            )
    test = to_ratings(test, user, item, rating)
    if test.nnz == 0:
        raise RatingsError("the test set is empty: 0 ratings")
    if train is not None:
        train = to_ratings(train, user, item, rating, name="train")
    threshold = None
    if relevance_threshold is not None:
        if test.implicit:
            raise ParameterError(
                f"relevance_threshold={relevance_threshold!r} is not allowed for implicit test "
                "data: every interaction is relevant; leave it None"
            )
        threshold = check_float("relevance_threshold", relevance_threshold, -np.inf)
    umap, imap = align(model, test)
    if cold_start == "raise":
        cold_u = test.user_counts[umap < 0].sum()
        cold_i = test.item_counts[imap < 0].sum()
        if cold_u or cold_i:
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
    views = views_of(model, test, umap) if lazy_model(model) else None
    err_part = rank_part = None
    if err_names and views is not None:
        parts = error_parts(_error_block, test, views, d_imap, cold_start, clip, per_user)
    elif err_names:
        parts = [
            dask.delayed(_error_block)(
                b,
                d_model,
                d_umap,
                d_imap,
                cold_start,
                clip,
                per_user,
                dask_key_name=key("eval-block", b.key, d_model.key, cold_start, clip, per_user),
            )
            for b in test.blocks
        ]
    if err_names:
        err_part = (
            dask.delayed(list)(parts) if per_user else tree_reduce(_add_dicts, parts, "eval-reduce")
        )
    if rank_wanted:
        bases = {b for _, b, _ in rank_wanted}
        beyond = beyond_inputs(model, bases)
        rank_part = _rank_part(model, test, train, rank_wanted, threshold, per_user, beyond,
                               d_umap, d_imap, views)  # fmt: skip
    n_catalogue = int((model.item_counts_ > 0).sum())
    if per_user:
        result = dask.delayed(_finish_per_user)(
            err_part, rank_part, err_names, rank_wanted, test.users
        )
    else:
        cold_items = int(test.item_counts[imap < 0].sum())
        result = dask.delayed(_finish_all)(
            err_part, rank_part, err_names, rank_wanted, n_catalogue, cold_items
        )
        if baseline is not None:
            pop = popularity_model(model)
            pop_part = _rank_part(pop, test, train, rank_wanted, threshold, False, beyond,
                                  d_umap, d_imap)  # fmt: skip
            pop_result = dask.delayed(_finish_all)(
                None, pop_part, [], rank_wanted, n_catalogue, cold_items
            )
            names = [n for n, _, _ in rank_wanted]
            result = dask.delayed(_with_lift)(result, pop_result, names, baseline)
    return result.compute() if compute else result


def _rank_part(
    model: FittedModel,
    test: Ratings,
    train: Ratings | None,
    rank_wanted: list[tuple[str, str, int]],
    threshold: float | None,
    per_user: bool,
    beyond: Any,
    d_umap: Any,
    d_imap: Any,
    views: list[tuple[Any, np.ndarray]] | None = None,
) -> Any:
    """The lazy reduced ranking partials (or per-user frames) of ``model`` on ``test``.

    ``views``: per test block, the model restricted to that block's users and
    the block's user map into it (:func:`dmf.evaluation._views.views_of`), for
    models whose arrays live on the workers or in a store.
    """
    ks = np.array(sorted({k for _, b, k in rank_wanted if b != "auc"} or {1}), dtype=np.int64)
    do_auc = any(b == "auc" for _, b, _ in rank_wanted)
    excl = exclusion_blocks(train, model, test.users, test.row_edges)
    d_model = dask.delayed(model, pure=True)
    d_beyond = dask.delayed(beyond, pure=True)
    if views is not None:
        parts = rank_parts(test, excl, views, d_imap, ks, threshold, do_auc, per_user, d_beyond)
        if per_user:
            return dask.delayed(list)(parts)
        return tree_reduce(add_rank_partials, parts, "eval-rank-reduce")
    parts = [
        dask.delayed(rank_partial)(
            b,
            ex,
            d_model,
            d_umap,
            d_imap,
            ks,
            threshold,
            do_auc,
            per_user,
            d_beyond,
            dask_key_name=key(
                "eval-rank-block",
                b.key,
                getattr(ex, "key", None),
                d_model.key,
                ks,
                threshold,
                do_auc,
                per_user,
                d_beyond.key,
            ),
        )
        for b, ex in zip(test.blocks, excl, strict=True)
    ]
    if per_user:
        return dask.delayed(list)(parts)
    return tree_reduce(add_rank_partials, parts, "eval-rank-reduce")


def _with_lift(
    result: dict[str, Any], base: dict[str, Any], names: list[str], baseline: str
) -> dict[str, Any]:
    """Each ranking metric's baseline value and ratio to it (NaN when the baseline is 0)."""
    out = dict(result)
    for n in names:
        b = base[n]
        out[f"{n}_{baseline}"] = b
        out[f"{n}_lift"] = result[n] / b if b else float("nan")
    return out


def _finish_all(
    err_total: dict[str, float] | None,
    rank_total: dict[str, Any] | None,
    err_names: list[str],
    rank_wanted: list[tuple[str, str, int]],
    n_catalogue: int,
    cold_items: int = 0,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if err_total is not None:
        out.update(_finish(err_total, err_names))
    if rank_total is not None:
        ks = np.array(sorted({k for _, b, k in rank_wanted if b != "auc"} or {1}), dtype=np.int64)
        ranked = finish_ranking(rank_total, rank_wanted, ks, n_catalogue)
        counts = {k: out.pop(k) for k in ("n", "n_cold") if k in out}
        out.update(ranked)  # metric values, then the ranking counts
        out["n_ratings_unseen_item"] = cold_items
        out.update(counts)
    return out


def _finish_per_user(
    err_frames: list[pd.DataFrame] | None,
    rank_frames: list[pd.DataFrame] | None,
    err_names: list[str],
    rank_wanted: list[tuple[str, str, int]],
    users: pd.Index,
) -> pd.DataFrame:
    frame = None
    if err_frames is not None:
        e = pd.concat(err_frames, ignore_index=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            if "rmse" in err_names:
                e["rmse"] = np.sqrt(e["sse"] / e["n_ratings"])
            if "mae" in err_names:
                e["mae"] = e["sae"] / e["n_ratings"]
        frame = e.drop(columns=["sse", "sae"])
    if rank_frames is not None:
        r = pd.concat(rank_frames, ignore_index=True)
        cols = ["user", "n_relevant"] + [n for n, b, _ in rank_wanted if b != "coverage"]
        r = r[cols]
        frame = r if frame is None else frame.merge(r, on="user", how="outer")
    frame = frame.sort_values("user", kind="stable")
    frame.index = users.take(frame["user"].to_numpy(dtype=np.int64))
    frame.index.name = "user"
    return frame.drop(columns=["user"])


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
