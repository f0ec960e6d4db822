"""dmf.Popular against pandas counts, with and without recency weights, through the whole API."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.testing import random_frame


def _frame(seed: int = 0) -> pd.DataFrame:
    df = random_frame(n_users=70, n_items=40, seed=seed)
    rng = np.random.default_rng(seed)
    df["t"] = rng.integers(0, 200 * 86400, len(df))
    return df


@pytest.mark.parametrize("chunk_nnz", [None, 97])
def test_counts_equal_pandas(chunk_nnz):
    df = _frame()
    r = dmf.from_pandas(df, chunk_nnz=chunk_nnz)
    m = dmf.fit(r, method="popular")
    ref = df.groupby("item").size()
    np.testing.assert_array_equal(m.items_.to_numpy(), ref.index.to_numpy())
    np.testing.assert_array_equal(m.item_bias_, ref.to_numpy(dtype=np.float64))
    np.testing.assert_array_equal(m.item_bias_, m.item_counts_)
    assert m.global_mean_ == 0.0 and not m.user_bias_.any()


@pytest.mark.parametrize("half_life", [1.0, 30.0])
def test_recency_weights_equal_pandas(half_life):
    df = _frame(1)
    r = dmf.from_pandas(df, timestamp="t", chunk_nnz=150)
    m = dmf.Popular(half_life=half_life).fit(r)
    age_days = (df["t"].max() - df["t"]) / 86400.0
    ref = (0.5 ** (age_days / half_life)).groupby(df["item"]).sum()
    np.testing.assert_allclose(m.item_bias_, ref.to_numpy(), rtol=1e-12)
    assert m.reference_time_ == df["t"].max()


def test_in_process_equals_the_graphs():
    r = dmf.from_pandas(_frame(2), timestamp="t", chunk_nnz=120)
    assert r.n_blocks > 1
    a = dmf.Popular(half_life=10.0).fit(r)
    with dask.config.set({"dmf.in-process": False}):
        b = dmf.Popular(half_life=10.0).fit(r)
    np.testing.assert_allclose(a.item_bias_, b.item_bias_, rtol=1e-12)


def test_recommend_predict_and_evaluate_rank_by_count():
    df = _frame(3)
    r = dmf.from_pandas(df)
    m = dmf.Popular().fit(r)
    counts = df.groupby("item").size()
    # highest count first, equal counts by the lower item id
    order = sorted(counts.index, key=lambda i: (-counts[i], i))
    user = df["user"].iloc[0]
    seen = set(df.loc[df["user"] == user, "item"])
    want = [i for i in order if i not in seen][:5]
    assert m.recommend(users=[user], k=5, exclude=r)["item"].tolist() == want
    # scores are counts, never clipped to the rating scale
    top = order[0]
    assert m.predict([user], [top])[0] == counts[top] > r.rating_scale[1]
    test = df.sample(frac=0.3, random_state=0)
    got = dmf.evaluate(m, test, ["precision@5"], relevance_threshold=4.0)
    assert 0.0 <= got["precision@5"] <= 1.0 and got["n_users"] > 0


def test_save_load_round_trip(tmp_path):
    r = dmf.from_pandas(_frame(4), timestamp="t")
    m = dmf.Popular(half_life=7.0).fit(r)
    back = dmf.load(m.save(tmp_path / "pop.zarr"))
    assert isinstance(back, dmf.Popular) and back.half_life == 7.0
    np.testing.assert_array_equal(back.item_bias_, m.item_bias_)
    assert back.reference_time_ == m.reference_time_
    users = list(m.users_[:3])
    pd.testing.assert_frame_equal(back.recommend(users, k=4), m.recommend(users, k=4))


def test_fold_in_keeps_the_scores():
    m = dmf.Popular().fit(dmf.from_pandas(_frame(6)))
    new = pd.DataFrame({"user": [10_000], "item": [m.items_[0]], "rating": [4.0]})
    folded = m.fold_in(new)
    got = folded.recommend([10_000], k=3)
    assert got["score"].tolist() == sorted(m.item_bias_, reverse=True)[:3]


def test_bad_input():
    r = dmf.from_pandas(_frame(5))
    with pytest.raises(dmf.RatingsError, match="needs timestamps"):
        dmf.Popular(half_life=3.0).fit(r)
    for bad in (0.0, -1.0, float("nan"), "3"):
        with pytest.raises(dmf.ParameterError, match="half_life"):
            dmf.Popular(half_life=bad).fit(r)
    with pytest.raises(dmf.RatingsError):
        dmf.Popular().fit([1, 2, 3])
    df = _frame(5)
    np.testing.assert_array_equal(dmf.Popular().fit(df).item_bias_, dmf.Popular().fit(r).item_bias_)
