"""Models whose factors live elsewhere: lazily loaded stores and Dask-array factors.

Every answer (predict, recommend, recommend_all, evaluate, fold_in, save) must
equal the in-memory model's, computed from the same numbers.
"""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import zarr

import dmf
from dmf.store import _persist

METRICS = ["rmse", "mae", "ndcg@10", "precision@5", "auc", "diversity@10"]


@pytest.fixture(scope="module")
def fitted(u1, tmp_path_factory):
    train, test = u1
    model = dmf.fit(train, method="als", rank=16, max_iter=3, seed=0)
    path = model.save(str(tmp_path_factory.mktemp("lazy") / "als.zarr"))
    return train, test, model, path


def _dask_factors(model_path: str, model: dmf.Recommender) -> dmf.Recommender:
    """The stored model with its factors as Dask arrays of irregular row blocks."""
    out = dmf.load(model_path, lazy=False)
    out.user_factors_ = da.from_array(model.user_factors_, chunks=((300, 200, 443), (16,)))
    out.item_factors_ = da.from_array(model.item_factors_, chunks=700)
    return out


@pytest.fixture(params=["lazy-store", "dask-factors"])
def other(request, fitted):
    _, _, model, path = fitted
    if request.param == "lazy-store":
        out = dmf.load(path, lazy=True, chunks=200)
        assert isinstance(out.user_factors_, da.Array)
        assert out.user_factors_.chunks[0][:2] == (200, 200)
        return out
    return _dask_factors(path, model)


def test_small_store_loads_in_memory(fitted):
    _, _, model, path = fitted
    assert model.user_factors_.nbytes + model.item_factors_.nbytes < _persist.LAZY_BYTES
    back = dmf.load(path)
    assert isinstance(back.user_factors_, np.ndarray)
    np.testing.assert_array_equal(back.user_factors_, model.user_factors_)


def test_predict_and_recommend_match(fitted, other):
    train, _, model, _ = fitted
    users = list(model.users_[[0, 5, 400, 942]])
    items = list(model.items_[[3, 3, 1000, 1]])
    np.testing.assert_allclose(other.predict(users, items), model.predict(users, items), 1e-6)
    for few in (users[:1], users):
        a = model.recommend(users=few, k=10, exclude=train)
        b = other.recommend(users=few, k=10, exclude=train)
        pd.testing.assert_frame_equal(a[["user", "item", "rank"]], b[["user", "item", "rank"]])
        np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5)


def _graphs(run) -> int:
    counts = {"graphs": 0}

    def count(*args, **kwargs):
        counts["graphs"] += 1
        return dask.get(*args, **kwargs)

    with dask.config.set(scheduler=count):
        run()
    return counts["graphs"]


def test_recommend_reads_item_factors_once(fitted):
    _, _, model, path = fitted
    user = [model.users_[7]]
    lazy = dmf.load(path, lazy=True)
    first = _graphs(lambda: lazy.recommend(users=user, k=5))
    # the item side is read once (one graph), the user's row straight from its Zarr chunk
    assert first == 1
    assert _graphs(lambda: lazy.recommend(users=user, k=5)) == 0
    sharded = _dask_factors(path, model)
    sharded.recommend(users=user, k=5)
    assert _graphs(lambda: sharded.recommend(users=user, k=5)) == 1  # the user's row only


def test_evaluate_matches(fitted, other):
    train, test, model, _ = fitted
    want = dmf.evaluate(model, test, METRICS, train=train)
    got = dmf.evaluate(other, test, METRICS, train=train)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, err_msg=name)
    a = dmf.evaluate(model, test, ["rmse", "ndcg@10"], train=train, per_user=True)
    b = dmf.evaluate(other, test, ["rmse", "ndcg@10"], train=train, per_user=True)
    pd.testing.assert_frame_equal(a, b, rtol=1e-5)


def test_recommend_all_matches(fitted, other):
    train, _, model, _ = fitted
    a = model.recommend_all(k=5, exclude=train).compute().reset_index(drop=True)
    b = other.recommend_all(k=5, exclude=train).compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(a[["user", "item", "rank"]], b[["user", "item", "rank"]])
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-5)


def test_fold_in_stays_lazy(fitted, other):
    _, _, model, _ = fitted
    new = pd.DataFrame(
        {"user": [10_000] * 3 + [1] * 2, "item": [50, 172, 181, 50, 1], "rating": [5.0, 4, 5, 3, 4]}
    )
    a, b = model.fold_in(new), other.fold_in(new)
    assert isinstance(b.user_factors_, da.Array)
    users, items = [10_000, 1, 2], [1, 1, 1]
    np.testing.assert_allclose(b.predict(users, items), a.predict(users, items), rtol=1e-5)
    assert (
        b.recommend(users=[10_000], k=5).item.tolist()
        == a.recommend(users=[10_000], k=5).item.tolist()
    )


def test_save_of_dask_factors(fitted, tmp_path):
    _, _, model, path = fitted
    other = _dask_factors(path, model)
    out = other.save(str(tmp_path / "again.zarr"))
    group = zarr.open_group(out, mode="r")
    assert group.attrs["dmf_complete"] is True
    assert group["user_factors"].chunks[0] <= 8192
    back = dmf.load(out)
    np.testing.assert_array_equal(back.user_factors_, model.user_factors_)
    np.testing.assert_array_equal(back.item_factors_, model.item_factors_)
    # a lazily loaded model saves without gathering either
    again = dmf.load(dmf.load(out, lazy=True).save(str(tmp_path / "third.zarr")))
    np.testing.assert_array_equal(again.user_factors_, model.user_factors_)


@pytest.mark.parametrize(("kw", "msg"), [({"lazy": "yes"}, "lazy"), ({"chunks": 0}, "chunks")])
def test_bad_arguments(fitted, kw, msg):
    with pytest.raises(dmf.ParameterError, match=msg):
        dmf.load(fitted[3], **kw)


def test_on_cluster(client, fitted, tmp_path):
    """Synthetic data built on the workers, a sharded model saved by them and loaded lazily."""
    _, test, model, path = fitted
    shape = {"n_users": 200_000, "n_items": 500, "nnz": 400_000, "rank": 4, "seed": 5}
    local = dmf.datasets.synthetic(**shape).to_scipy()
    small_graphs = dask.config.set({"distributed.admin.large-graph-warning-threshold": "1MB"})
    with client.as_current():
        with small_graphs, warnings.catch_warnings():
            # the in-client build shipped the per-user counts (1.6 MB here) in its graph
            warnings.filterwarnings("error", message=".*[Ll]arge graph.*")
            remote = dmf.datasets.synthetic(**shape)
        assert (remote.to_scipy() != local).nnz == 0
        with small_graphs, warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*[Ll]arge graph.*")
            sharded = dmf.load(path, lazy=False)
            sharded.user_factors_ = client.persist(da.from_array(model.user_factors_, chunks=250))
            out = sharded.save(str(tmp_path / "sharded.zarr"))
            lazy = dmf.load(out, lazy=True)
            user = [model.users_[3]]
            got = lazy.recommend(users=user, k=5)
            pd.testing.assert_frame_equal(got, model.recommend(users=user, k=5))
            rmse = dmf.evaluate(lazy, test, ["rmse"])["rmse"]
            np.testing.assert_allclose(rmse, dmf.evaluate(model, test, ["rmse"])["rmse"], 1e-6)
    np.testing.assert_array_equal(dmf.load(out).user_factors_, model.user_factors_)
