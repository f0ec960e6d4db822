"""recommend / recommend_all / similar_items against dense numpy references."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from dask.callbacks import Callback

import dmf
from dmf.testing import random_frame


def _factor_model(train, rank=4, seed=0):
    """Hand-set factors and biases that are multiples of 1/2: exact float32 scores, ties."""
    model = dmf.Baseline(max_iter=1).fit(train)
    rng = np.random.default_rng(seed)
    model.global_mean_ = 3.5
    model.user_bias_ = (rng.integers(-2, 3, model.users_.size) / 2).astype(np.float32)
    model.item_bias_ = (rng.integers(-2, 3, model.items_.size) / 2).astype(np.float32)
    model.user_factors_ = rng.integers(-1, 2, (model.users_.size, rank)).astype(np.float32)
    model.item_factors_ = rng.integers(-1, 2, (model.items_.size, rank)).astype(np.float32)
    return model


def _dense_topk(model, user_codes, k, train_df=None, cold=None):
    """Reference: full dense scores, masks, sort by (-score, item code) with an integer key."""
    ub = model.user_bias_[user_codes].astype(np.float64)
    dots = model.user_factors_[user_codes].astype(np.float64) @ model.item_factors_.T
    if cold is not None:  # users unseen in training: mu + b_i
        ub[cold] = 0.0
        dots[cold] = 0.0
    s = model.global_mean_ + model.item_bias_[None, :].astype(np.float64) + ub[:, None] + dots
    m = s.shape[1]
    keyed = np.rint(-s * 2).astype(np.int64) * m + np.arange(m)[None, :]
    big = np.iinfo(np.int64).max
    keyed[:, model.item_counts_ == 0] = big
    if train_df is not None:
        icode = model.items_.get_indexer(train_df["item"])
        ucode = model.users_.get_indexer(train_df["user"])
        for u, i in zip(ucode, icode, strict=True):
            if i >= 0:
                keyed[np.asarray(user_codes) == u, i] = big
    order = np.argsort(keyed, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(keyed, order, axis=1) != big
    return order, np.take_along_axis(s, order, axis=1), valid


def _as_lists(df, owner="user", item="item"):
    return {u: g.sort_values("rank")[item].tolist() for u, g in df.groupby(owner)}


@pytest.fixture(scope="module")
def small():
    df = random_frame(n_users=120, n_items=50, density=0.2, seed=7)
    r = dmf.from_pandas(df, chunk_nnz=200)
    train, test = dmf.split.random(r, test_size=0.25, seed=0)
    return _factor_model(train), train, test


# --------------------------------------------------------------- recommend
@pytest.mark.parametrize("k", [1, 5, 50])
def test_recommend_equals_dense_reference(small, k):
    model, train, _ = small
    users = [3, 0, 77, 119, 3]
    recs = model.recommend(users, k=k, exclude=train)
    codes = model._user_codes(users)
    items, scores, valid = _dense_topk(model, codes, k, train.to_pandas())
    expected_rows = []
    for r, u in enumerate(users):
        for t in range(k):
            if valid[r, t]:
                expected_rows.append((u, model.items_[items[r, t]], scores[r, t], t + 1))
    want = pd.DataFrame(expected_rows, columns=["user", "item", "score", "rank"])
    assert recs["user"].tolist() == want["user"].tolist()
    assert recs["item"].tolist() == want["item"].tolist()
    assert recs["rank"].tolist() == want["rank"].tolist()
    np.testing.assert_allclose(recs["score"], want["score"], atol=1e-6)
    assert list(recs.columns) == ["user", "item", "score", "rank"]
    # score equals predict() before clipping for every recommended pair
    pred = model.predict(recs["user"], recs["item"], clip=False)
    np.testing.assert_allclose(recs["score"], pred, atol=1e-5)


def test_recommend_without_exclude_and_cold_users(small):
    model, _, _ = small
    recs = model.recommend([5, "new-user"], k=4)
    codes = model._user_codes([5, "new-user"])
    cold = codes < 0
    items, _, _ = _dense_topk(model, np.where(cold, 0, codes), 4, cold=cold)
    got = _as_lists(recs.astype({"user": str}))
    assert got["5"] == model.items_.take(items[0]).tolist()
    assert got["new-user"] == model.items_.take(items[1]).tolist()  # by mu + b_i
    skipped = model.recommend([5, "new-user"], k=4, cold_start="skip")
    assert skipped["user"].tolist() == [5] * 4
    with pytest.raises(dmf.UnknownIdError, match="1 user id"):
        model.recommend([5, "new-user"], k=4, cold_start="raise")


def test_items_unseen_in_training_are_never_recommended(small):
    model, train, _ = small
    model.item_counts_ = model.item_counts_.copy()
    try:
        model.item_counts_[:10] = 0  # pretend the first 10 items were never seen
        recs = model.recommend(list(range(20)), k=30, exclude=train)
        assert not set(recs["item"]) & set(model.items_[:10])
        with pytest.raises(dmf.ParameterError, match=r"k=45 is larger than the catalogue.*40"):
            model.recommend([0], k=45)
    finally:
        model.item_counts_ = train.item_counts.copy()


def test_exclude_with_its_own_id_maps(small):
    model, train, _ = small
    train_df = train.to_pandas()
    own = dmf.from_pandas(train_df[train_df["user"] != 3], chunk_nnz=97)
    recs = model.recommend([3, 4], k=6, exclude=own)  # user 3 absent from exclude
    codes = model._user_codes([3, 4])
    items, _, _ = _dense_topk(model, codes, 6, train_df[train_df["user"] != 3])
    got = _as_lists(recs)
    assert got[3] == model.items_.take(items[0]).tolist()
    assert got[4] == model.items_.take(items[1]).tolist()


class _Count(Callback):
    def __init__(self):
        super().__init__()
        self.n = 0

    def _start(self, dsk):
        self.n += 1


def test_recommend_runs_without_dask_once_cached(small):
    model, train, _ = small
    model.recommend([1], k=3, exclude=train)  # builds and caches the exclusion lists
    with _Count() as counter:
        for u in range(10):
            model.recommend([u], k=3, exclude=train)
        model.recommend([1, 2], k=3)
    assert counter.n == 0


def test_cache_is_not_pickled_and_follows_refits(small):
    model, train, _ = small
    model.recommend([1], k=3, exclude=train)
    assert "_rec_cache" in model.__dict__
    clone = pickle.loads(pickle.dumps(model))
    assert "_rec_cache" not in clone.__dict__
    pd.testing.assert_frame_equal(
        clone.recommend([1], k=3, exclude=train), model.recommend([1], k=3, exclude=train)
    )
    clone.item_factors_ = -clone.item_factors_  # a "refit": new arrays
    clone.recommend([1], k=3)
    codes = clone._user_codes([1])
    items, _, _ = _dense_topk(clone, codes, 3, train.to_pandas())
    assert (
        clone.recommend([1], k=3, exclude=train)["item"].tolist()
        == clone.items_.take(items[0]).tolist()
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"k": 0}, dmf.ParameterError, "k=0"),
        ({"k": 2.5}, dmf.ParameterError, "k=2.5"),
        ({"k": 51}, dmf.ParameterError, "k=51 is larger than the catalogue.*50"),
        ({"exclude": "train"}, dmf.ParameterError, "exclude must be"),
        ({"users": []}, dmf.ParameterError, "users is empty"),
        ({"cold_start": "nan"}, dmf.ParameterError, "cold_start"),
    ],
)
def test_recommend_bad_input(small, kwargs, error, match):
    model, _, _ = small
    args = {"users": [1], "k": 3, **kwargs}
    with pytest.raises(error, match=match):
        model.recommend(**args)


def test_not_fitted():
    with pytest.raises(dmf.NotFittedError):
        dmf.Baseline().recommend([1])
    with pytest.raises(dmf.NotFittedError):
        dmf.Baseline().recommend_all()


# ------------------------------------------------------------ recommend_all
@pytest.fixture(scope="module")
def five_thousand():
    df = random_frame(n_users=5000, n_items=120, density=0.03, seed=11)
    r = dmf.from_pandas(df, chunk_nnz=4000)
    return _factor_model(r, rank=6, seed=4), r, df


def test_recommend_all_5000_users_equals_dense_topk(five_thousand):
    model, r, df = five_thousand
    assert r.n_blocks > 3
    recs = model.recommend_all(k=10, exclude=r)
    assert recs.npartitions == r.n_blocks
    got = recs.compute()
    codes = np.arange(model.users_.size)
    items, scores, valid = _dense_topk(model, codes, 10, df)
    want_items = model.items_.take(items[valid])
    got = got.sort_values(["user", "rank"], kind="stable")
    assert got["user"].tolist() == np.repeat(model.users_, valid.sum(axis=1)).tolist()
    assert got["item"].tolist() == want_items.tolist()
    np.testing.assert_allclose(got["score"], scores[valid], atol=1e-5)
    assert got["rank"].max() == 10 and got["rank"].min() == 1
    assert got["score"].dtype == np.float32


def test_recommend_all_on_cluster_and_with_own_exclude(five_thousand, client):
    model, r, df = five_thousand
    local = model.recommend_all(k=5, exclude=r).compute()
    own = dmf.from_pandas(df.sample(frac=1.0, random_state=0), chunk_nnz=7000)
    with client.as_current():
        dist = model.recommend_all(k=5, exclude=own).compute()
    pd.testing.assert_frame_equal(
        local.reset_index(drop=True), dist.reset_index(drop=True), check_dtype=False
    )


def test_recommend_all_task_names(five_thousand):
    model, r, _ = five_thousand
    graph = dict(model.recommend_all(k=3, exclude=r).__dask_graph__())
    assert any(str(k).startswith("recommend-block-") for k in graph)


# ------------------------------------------------------------ similar_items
def test_similar_items_cosine(small):
    model, _, _ = small
    f = model.item_factors_.astype(np.float64)
    unit = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-300)
    unit[np.linalg.norm(f, axis=1) == 0] = 0
    sims = unit @ unit.T
    q = [0, 7, 42]
    got = model.similar_items(q, k=5)
    assert list(got.columns) == ["item", "similar_item", "score", "rank"]
    for r, item in enumerate(q):
        c = model.items_.get_loc(item)
        row = sims[c].copy()
        row[c] = -np.inf
        row[model.item_counts_ == 0] = -np.inf
        want_scores = np.sort(row)[::-1][:5]
        mine = got[got["item"] == item]
        np.testing.assert_allclose(mine["score"], want_scores, atol=1e-6)
        assert item not in mine["similar_item"].tolist()
        # each returned neighbour's cosine is the stated one
        cod = model.items_.get_indexer(mine["similar_item"])
        np.testing.assert_allclose(sims[c, cod], mine["score"], atol=1e-6)
        del r


def test_similar_items_errors(small):
    model, train, _ = small
    with pytest.raises(dmf.ParameterError, match="bias-only"):
        dmf.Baseline().fit(train).similar_items([1])
    with pytest.raises(dmf.UnknownIdError, match="1 item id"):
        model.similar_items([1, 123456])
    with pytest.raises(dmf.ParameterError, match=r"k=50 is larger than the catalogue.*49"):
        model.similar_items([1], k=50)
    with pytest.raises(dmf.ParameterError, match="k=-1"):
        model.similar_items([1], k=-1)
