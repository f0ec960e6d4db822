"""The baseline model against a dense numpy reference, on ML-100K u1, and on a real cluster."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest

import dmf
from dmf.testing import random_frame, random_ratings


def dense_reference(r: dmf.Ratings, reg_user: float, reg_item: float, n_iter: int):
    """The same alternating closed-form updates on a dense matrix with a mask."""
    df = r.to_pandas(codes=True)
    R = np.zeros(r.shape)
    M = np.zeros(r.shape, dtype=bool)
    R[df["user"], df["item"]] = df["rating"]
    M[df["user"], df["item"]] = True
    mu = R[M].mean()
    bu = np.zeros(r.n_users)
    bi = np.zeros(r.n_items)
    for _ in range(n_iter):
        bi = (M * (R - mu - bu[:, None])).sum(0) / (reg_item + M.sum(0))
        bu = (M * (R - mu - bi[None, :])).sum(1) / (reg_user + M.sum(1))
    return mu, bu, bi


@pytest.mark.parametrize(
    ("reg_user", "reg_item", "n_iter", "chunk_nnz"),
    [(15.0, 10.0, 10, None), (0.0, 0.0, 1, 150), (3.0, 0.5, 4, 97), (0.0, 25.0, 3, 1_000)],
)
def test_biases_equal_dense_reference(reg_user, reg_item, n_iter, chunk_nnz):
    r = dmf.from_pandas(random_frame(n_users=60, n_items=35, seed=2), chunk_nnz=chunk_nnz)
    m = dmf.Baseline(reg_user=reg_user, reg_item=reg_item, max_iter=n_iter).fit(r)
    mu, bu, bi = dense_reference(r, reg_user, reg_item, n_iter)
    assert m.global_mean_ == pytest.approx(mu, abs=1e-9)
    np.testing.assert_allclose(m.user_bias_, bu, atol=1e-5)
    np.testing.assert_allclose(m.item_bias_, bi, atol=1e-5)
    assert m.user_bias_.dtype == np.float32 and len(m.history) == n_iter


def test_unregularised_one_pass_is_item_then_user_means():
    df = pd.DataFrame(
        {"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2], "rating": [5.0, 3, 4, 2, 1]}
    )
    m = dmf.Baseline(reg_user=0, reg_item=0, max_iter=1).fit(dmf.from_pandas(df))
    mu = 3.0
    item_mean = {1: 4.5 - mu, 2: 2.0 - mu, 3: 2.0 - mu}
    np.testing.assert_allclose(m.item_bias_, list(item_mean.values()), atol=1e-6)
    # user 1: residuals 5-3-1.5 and 3-3+1 -> mean 0.75
    assert m.user_bias_[0] == pytest.approx(0.75)


@pytest.mark.slow
def test_ml100k_u1_rmse(u1):
    train, test = u1
    model = dmf.fit(train, method="baseline", reg_user=15, reg_item=10, max_iter=10)
    scores = dmf.evaluate(model, test, metrics=["rmse", "mae"])
    assert scores["rmse"] <= 0.961  # Surprise BaselineOnly: 0.9599
    assert scores["mae"] < 0.77


def test_ml100k_u1_separate_files_agree(u1, u1_frames):
    """Test data given as a DataFrame with its own ids is aligned by original ids."""
    train, test = u1
    model = dmf.Baseline().fit(train)
    a = dmf.evaluate(model, test)["rmse"]
    b = dmf.evaluate(model, u1_frames[1])["rmse"]
    assert a == pytest.approx(b, rel=1e-9)


def test_threaded_and_distributed_fits_agree(client):
    r = dmf.datasets.synthetic(n_users=300, n_items=200, nnz=8_000, seed=0, chunk_nnz=1_500)
    ref = dmf.Baseline(max_iter=5).fit(r)
    with client.as_current():
        got = dmf.Baseline(max_iter=5).fit(r)
    np.testing.assert_allclose(got.user_bias_, ref.user_bias_, atol=1e-6)
    np.testing.assert_allclose(got.item_bias_, ref.item_bias_, atol=1e-6)


def test_in_process_equals_the_graphs():
    r = dmf.datasets.synthetic(n_users=300, n_items=200, nnz=8_000, seed=0, chunk_nnz=1_500)
    assert r.n_blocks > 1
    a = dmf.Baseline(max_iter=4).fit(r)
    with dask.config.set({"dmf.in-process": False}):
        b = dmf.Baseline(max_iter=4).fit(r)
    np.testing.assert_array_equal(a.user_bias_, b.user_bias_)
    np.testing.assert_array_equal(a.item_bias_, b.item_bias_)


def test_cold_start_policies():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [5.0, 3.0, 4.0]})
    m = dmf.Baseline(reg_user=0, reg_item=0, max_iter=2).fit(dmf.from_pandas(df))
    base = m.predict([99], [1])[0]
    assert base == pytest.approx(m.global_mean_ + m.item_bias_[0], abs=1e-6)
    assert np.isnan(m.predict([99], [1], cold_start="nan")[0])
    with pytest.raises(dmf.UnknownIdError, match="1 pair"):
        m.predict([99, 1], [1, 1], cold_start="raise")


@pytest.mark.parametrize(
    ("kw", "name"), [({"reg_user": -1}, "reg_user"), ({"max_iter": 0}, "max_iter")]
)
def test_bad_hyper_parameters(kw, name):
    r = dmf.from_pandas(random_frame(seed=1))
    with pytest.raises(dmf.ParameterError, match=name):
        dmf.Baseline(**kw).fit(r)


def test_n_iter_is_a_deprecated_alias_of_max_iter():
    r = random_ratings(n_users=20, n_items=10, seed=2)
    with pytest.warns(dmf.DMFWarning, match=r"n_iter=.*deprecated.*max_iter"):
        old = dmf.Baseline(n_iter=3)
    assert old.max_iter == 3 and "n_iter" not in old.get_params()
    np.testing.assert_array_equal(old.fit(r).user_bias_, dmf.Baseline(max_iter=3).fit(r).user_bias_)


def test_resume_continues_to_the_same_biases(tmp_path):
    r = random_ratings(n_users=40, n_items=15, seed=3)
    full = dmf.Baseline(max_iter=6).fit(r)
    path = str(tmp_path / "ckpt")
    dmf.Baseline(max_iter=3).fit(r, checkpoint=path)
    resumed = dmf.Baseline(max_iter=6).fit(r, checkpoint=path, resume=True)
    np.testing.assert_array_equal(resumed.user_bias_, full.user_bias_)
    np.testing.assert_array_equal(resumed.item_bias_, full.item_bias_)
    assert list(resumed.history["iteration"]) == list(range(1, 7))
    with pytest.raises(dmf.ParameterError, match="different fit"):
        dmf.Baseline(max_iter=6, reg_user=1.0).fit(r, checkpoint=path, resume=True)


def test_constant_ratings_warn_that_an_explicit_model_learns_nothing():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [1.0, 1.0, 1.0]})
    with pytest.warns(dmf.DMFWarning, match=r"all 3 ratings equal 1.*implicit=True"):
        dmf.Baseline().fit(dmf.from_pandas(df))


def test_fit_takes_a_dataframe_as_evaluate_does():
    df = random_frame(n_users=15, n_items=8, seed=4)
    a = dmf.fit(df, method="baseline")
    b = dmf.fit(dmf.from_pandas(df), method="baseline")
    np.testing.assert_array_equal(a.user_bias_, b.user_bias_)
    pairs = df.head(5)
    out = a.predict(pairs)
    np.testing.assert_array_equal(
        out["prediction"].to_numpy(), a.predict(pairs["user"], pairs["item"])
    )
    with pytest.raises(dmf.ParameterError, match="lacks column"):
        a.predict(pairs.rename(columns={"item": "movie"}))
