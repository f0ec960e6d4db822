"""cross_validate and grid_search: one graph of fits, equal to a plain loop, reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from dask.callbacks import Callback

import dmf
from dmf.testing import random_ratings


@pytest.fixture(scope="module")
def ratings():
    return random_ratings(n_users=80, n_items=40, density=0.25, seed=2, chunk_nnz=250)


def _loop(r, folds, seed, metrics, threshold=None, **params):
    """The same thing by hand: kfold, fit, evaluate, one fold after the other."""
    out = []
    for train, test in dmf.split.kfold(r, folds, seed):
        model = dmf.fit(train, method="baseline", **params)
        ranking = any("@" in m or m == "auc" for m in metrics)
        out.append(
            dmf.evaluate(
                model,
                test,
                metrics,
                train=train if ranking else None,
                relevance_threshold=threshold,
            )
        )
    return pd.DataFrame(out)


class _Graphs(Callback):
    def __init__(self):
        super().__init__()
        self.graphs = []

    def _start(self, dsk):
        self.graphs.append([str(k) for k in dsk])


def test_cross_validate_equals_loop_and_is_one_graph(ratings):
    metrics = ["rmse", "mae", "ndcg@5", "precision@5"]
    with _Graphs() as seen:
        cv = dmf.cross_validate(
            ratings,
            method="baseline",
            folds=4,
            metrics=metrics,
            seed=3,
            reg_user=5.0,
            relevance_threshold=3.0,
        )
    want = _loop(ratings, 4, 3, metrics, threshold=3.0, reg_user=5.0)
    assert list(cv.index) == [0, 1, 2, 3, "mean", "std"]
    for m in metrics:
        np.testing.assert_allclose(cv.loc[[0, 1, 2, 3], m].astype(float), want[m], atol=1e-9)
        assert cv.loc["mean", m] == pytest.approx(want[m].mean())
        assert cv.loc["std", m] == pytest.approx(want[m].std(ddof=1))
    assert (cv.loc[[0, 1, 2, 3], "n"] == want["n"]).all()
    assert "fit_seconds" in cv.columns
    fits = [g for g in seen.graphs if any(k.startswith("cv-fit-evaluate-") for k in g)]
    assert len(fits) == 1  # all folds in one graph
    assert sum(k.startswith("cv-fit-evaluate-") for k in fits[0]) == 4


def test_cross_validate_is_reproducible_by_seed(ratings):
    a = dmf.cross_validate(ratings, folds=3, metrics=["rmse"], seed=1)
    b = dmf.cross_validate(ratings, folds=3, metrics=["rmse"], seed=1)
    c = dmf.cross_validate(ratings, folds=3, metrics=["rmse"], seed=2)
    assert a["rmse"].tolist() == b["rmse"].tolist()
    assert a["rmse"].tolist() != c["rmse"].tolist()


def test_grid_search_equals_loop(ratings):
    grid = {"reg_user": [0.0, 15.0], "reg_item": [2.0, 10.0]}
    with _Graphs() as seen:
        best = dmf.grid_search(
            ratings, method="baseline", params=grid, folds=3, metric="rmse", seed=5, max_iter=3
        )
    rows = []
    for ru in grid["reg_user"]:
        for ri in grid["reg_item"]:
            res = _loop(ratings, 3, 5, ["rmse"], reg_user=ru, reg_item=ri, max_iter=3)
            rows.append((ru, ri, res["rmse"].mean(), res["rmse"].std(ddof=1), res["rmse"].tolist()))
    rows.sort(key=lambda t: t[2])
    assert best[["reg_user", "reg_item"]].to_numpy().tolist() == [[a, b] for a, b, *_ in rows]
    np.testing.assert_allclose(best["rmse_mean"], [t[2] for t in rows], atol=1e-9)
    np.testing.assert_allclose(best["rmse_std"], [t[3] for t in rows], atol=1e-9)
    np.testing.assert_allclose(
        best[["rmse_fold0", "rmse_fold1", "rmse_fold2"]].to_numpy(), [t[4] for t in rows], atol=1e-9
    )
    assert best["rank"].tolist() == [1, 2, 3, 4]
    assert best.attrs["best_params"] == {"reg_user": rows[0][0], "reg_item": rows[0][1]}
    assert best.attrs["metric"] == "rmse"
    fits = [g for g in seen.graphs if any(k.startswith("cv-fit-evaluate-") for k in g)]
    assert len(fits) == 1 and sum(k.startswith("cv-fit-evaluate-") for k in fits[0]) == 12


def test_grid_search_ranking_metric_higher_is_better(ratings):
    best = dmf.grid_search(
        ratings, params={"reg_item": [0.0, 25.0]}, folds=2, metric="ndcg@5", seed=0
    )
    assert best["ndcg@5_mean"].is_monotonic_decreasing
    assert best.attrs["best_params"]["reg_item"] == best.loc[0, "reg_item"]


def test_on_a_distributed_cluster_equals_threads(ratings, client):
    metrics = ["rmse", "ndcg@5"]
    local = dmf.cross_validate(ratings, folds=3, metrics=metrics, seed=0)
    local_grid = dmf.grid_search(ratings, params={"reg_user": [1.0, 20.0]}, folds=2, seed=0)
    with client.as_current():
        dist = dmf.cross_validate(ratings, folds=3, metrics=metrics, seed=0)
        dist_grid = dmf.grid_search(ratings, params={"reg_user": [1.0, 20.0]}, folds=2, seed=0)
    for m in metrics:
        np.testing.assert_allclose(dist[m].astype(float), local[m].astype(float), atol=1e-9)
    cols = ["reg_user", "rmse_mean", "rmse_fold0", "rmse_fold1", "rank"]
    pd.testing.assert_frame_equal(dist_grid[cols], local_grid[cols])


@pytest.mark.skipif("als" not in dmf.METHODS, reason="ALS not registered yet")
def test_cross_validate_factor_model(ratings):
    cv = dmf.cross_validate(
        ratings, method="als", folds=2, metrics=["rmse", "ndcg@5"], seed=0, rank=4
    )
    again = dmf.cross_validate(
        ratings, method="als", folds=2, metrics=["rmse", "ndcg@5"], seed=0, rank=4
    )
    assert np.isfinite(cv.loc["mean", "rmse"])
    np.testing.assert_allclose(cv["rmse"].astype(float), again["rmse"].astype(float))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda r: dmf.cross_validate(r, method="nope"), "method='nope' is unknown"),
        (lambda r: dmf.cross_validate(r, folds=1), "folds=1"),
        (lambda r: dmf.cross_validate(r, reg_usr=3), "unknown parameter"),
        (lambda r: dmf.cross_validate(r, reg_user=-1.0), "reg_user"),
        (lambda r: dmf.cross_validate(r, metrics=["rsme"]), "unknown metric"),
        (lambda r: dmf.cross_validate(r, metrics=["ndcg@0"]), "k=0"),
        (lambda r: dmf.cross_validate(r, seed=-1), "seed"),
        (lambda r: dmf.grid_search(r, params={}), "non-empty dict"),
        (lambda r: dmf.grid_search(r, params={"reg_user": []}), "empty"),
        (lambda r: dmf.grid_search(r, params={"reg_user": 5}), "list of values"),
        (lambda r: dmf.grid_search(r, params={"reg_user": [-1, 1]}), "reg_user"),
        (lambda r: dmf.grid_search(r, params={"reg_user": [1]}, metric=["rmse"]), "one metric"),
        (lambda r: dmf.grid_search(r, params={"reg_user": [1]}, reg_user=2), "both searched"),
    ],
)
def test_bad_input(ratings, call, match):
    with pytest.raises(dmf.ParameterError, match=match):
        call(ratings)


def test_not_ratings():
    with pytest.raises(dmf.RatingsError, match=r"must be a dmf\.Ratings or a pandas DataFrame"):
        dmf.cross_validate([(1, 1, 1.0)])


def test_grid_search_over_rank_keeps_the_rank_values():
    # a searched hyper-parameter named "rank" (ALS, SGD) must not be overwritten by the
    # position column, which is then called rank_<metric>
    r = random_ratings(n_users=40, n_items=30, seed=3)
    best = dmf.grid_search(r, method="als", params={"rank": [2, 3]}, folds=2, max_iter=1)
    assert sorted(best["rank"]) == [2, 3]
    assert best["rank_rmse"].tolist() == [1, 2]
    assert best.attrs["best_params"]["rank"] == best.loc[0, "rank"]
