"""Synthetic generator: same data for any chunking, no duplicates, power laws, half stars."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import dmf
from dmf.datasets import _synthetic
from dmf.kernels._synthetic import _reference_rating_values, rating_values, sample_items

SHAPE = {"n_users": 400, "n_items": 600, "nnz": 30_000}


def same(a: dmf.Ratings, b: dmf.Ratings) -> bool:
    fa, fb = a.to_pandas(codes=True), b.to_pandas(codes=True)
    return fa.equals(fb)


def test_deterministic_across_chunkings():
    ref = dmf.datasets.synthetic(**SHAPE, seed=3)
    for chunk_nnz in (1_000, 7_777, 30_000):
        r = dmf.datasets.synthetic(**SHAPE, seed=3, chunk_nnz=chunk_nnz)
        assert r.n_blocks == -(-SHAPE["nnz"] // chunk_nnz)
        assert same(r, ref)


def test_deterministic_across_generation_chunk_boundaries(monkeypatch):
    """Row blocks cut across several generation chunks assemble to the same data."""
    monkeypatch.setattr(_synthetic, "_GEN_NNZ", 4_000)
    a = dmf.datasets.synthetic(**SHAPE, seed=1, chunk_nnz=2_500)
    b = dmf.datasets.synthetic(**SHAPE, seed=1, chunk_nnz=11_000)
    c = dmf.datasets.synthetic(**SHAPE, seed=1)
    assert same(a, b) and same(a, c)


def test_seed_changes_data():
    a = dmf.datasets.synthetic(**SHAPE, seed=0)
    b = dmf.datasets.synthetic(**SHAPE, seed=1)
    assert not same(a, b)


def test_shape_values_and_no_duplicates():
    r = dmf.datasets.synthetic(**SHAPE, seed=4)
    df = r.to_pandas(codes=True)
    assert r.shape == (400, 600) and r.nnz == len(df) == 30_000
    assert not df.duplicated(["user", "item"]).any()
    assert (r.user_counts >= 1).all()
    vals = df["rating"].to_numpy()
    assert vals.min() >= 1.0 and vals.max() <= 5.0
    np.testing.assert_array_equal(vals * 2, np.round(vals * 2))
    assert len(np.unique(vals)) == 9
    assert r.rating_scale == (1.0, 5.0)
    assert r.has_timestamps
    ts = df["timestamp"]
    assert ts.min() >= 946_684_800 and ts.max() < 1_420_070_400


def test_power_laws():
    r = dmf.datasets.synthetic(n_users=2_000, n_items=3_000, nnz=100_000, seed=0)
    u = np.sort(r.user_counts)[::-1]
    i = np.sort(r.item_counts)[::-1]
    # heavy tails: the top 10% of users / items hold far more than 10% of ratings
    assert u[: len(u) // 10].sum() > 0.3 * r.nnz
    assert i[: len(i) // 10].sum() > 0.3 * r.nnz
    assert u.max() > 10 * np.median(u)
    assert i.max() > 10 * np.median(i)


def test_signal_is_learnable():
    """The biases carry signal: the baseline beats the global mean on held-out ratings."""
    r = dmf.datasets.synthetic(**SHAPE, seed=5, noise=0.3)
    train, test = dmf.split.random(r, test_size=0.2, seed=0)
    model = dmf.Baseline(reg_user=5, reg_item=5).fit(train)
    rmse = dmf.evaluate(model, test)["rmse"]
    mean_rmse = float(np.sqrt(np.mean((test.to_pandas()["rating"] - train.global_mean) ** 2)))
    assert rmse < 0.9 * mean_rmse


def test_without_timestamps():
    r = dmf.datasets.synthetic(n_users=50, n_items=40, nnz=500, timestamps=False)
    assert not r.has_timestamps and r.timestamps is None


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"nnz": 10}, "nnz"),  # fewer ratings than users
        ({"nnz": 10_000_000}, "nnz"),  # denser than half the catalogue
        ({"rank": 0}, "rank"),
        ({"noise": -1.0}, "noise"),
        ({"seed": -3}, "seed"),
        ({"seed": 2**200}, "seed"),
        ({"n_users": 0}, "n_users"),
        ({"chunk_nnz": 0}, "chunk_nnz"),
    ],
)
def test_bad_parameters(kw, name):
    args = {"n_users": 100, "n_items": 50, "nnz": 1_000, **kw}
    with pytest.raises(dmf.ParameterError, match=name):
        dmf.datasets.synthetic(**args)


def test_sample_items_kernel():
    counts = np.array([3, 0, 50, 100, 1], dtype=np.int64)  # 100 = the whole catalogue's half
    cdf = np.cumsum(np.arange(200, 0, -1, dtype=np.float64) ** 2)
    cdf /= cdf[-1]
    out = sample_items(counts, cdf, 12345)
    assert len(out) == counts.sum()
    starts = np.concatenate([[0], np.cumsum(counts)])
    for a, b in itertools.pairwise(starts):
        chunk = out[a:b]
        assert (np.diff(chunk) > 0).all()  # sorted and distinct
        assert chunk.min(initial=0) >= 0 and chunk.max(initial=0) < 200
    np.testing.assert_array_equal(out, sample_items(counts, cdf, 12345))


def test_rating_values_kernel_matches_dense_reference():
    rng = np.random.default_rng(0)
    n_u, n_i, k, n = 30, 20, 5, 200
    rows = rng.integers(0, n_u, n).astype(np.int32)
    cols = rng.integers(0, n_i, n).astype(np.int32)
    args = (
        3.5,
        rng.normal(0, 0.4, n_u),
        rng.normal(0, 0.5, n_i),
        rng.normal(0, 0.3, (n_u, k)),
        rng.normal(0, 0.3, (n_i, k)),
        rng.normal(0, 0.5, n),
    )
    np.testing.assert_array_equal(
        rating_values(rows, cols, *args), _reference_rating_values(rows, cols, *args)
    )
