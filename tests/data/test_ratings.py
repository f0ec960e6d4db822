"""The Ratings container: id maps, the sparse Dask matrix, nnz-balanced blocks, CSR views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import sparse

import dmf
from dmf.data._blocks import balanced_edges
from dmf.testing import random_frame


def scipy_build(df: pd.DataFrame, users: pd.Index, items: pd.Index) -> sp.csr_array:
    """The same triples built directly with scipy, codes from sorted unique ids."""
    u = pd.Index(sorted(df["user"].unique())).get_indexer(df["user"])
    i = pd.Index(sorted(df["item"].unique())).get_indexer(df["item"])
    return sp.csr_array((df["rating"].to_numpy(np.float32), (u, i)), shape=(len(users), len(items)))


@pytest.mark.parametrize("chunk_nnz", [None, 97, 500])
def test_matrix_equals_scipy_build(chunk_nnz):
    df = random_frame(n_users=70, n_items=45, density=0.25, seed=4)
    df = df.sample(frac=1.0, random_state=0)  # input order must not matter
    r = dmf.from_pandas(df, chunk_nnz=chunk_nnz)
    ref = scipy_build(df, r.users, r.items)
    dense = r.matrix.compute().todense()
    np.testing.assert_array_equal(dense, ref.toarray())
    assert r.matrix.shape == (r.n_users, r.n_items) == ref.shape
    assert r.nnz == ref.nnz == len(df)
    assert r.global_mean == pytest.approx(df["rating"].mean())
    np.testing.assert_array_equal(r.user_counts, np.diff(ref.indptr))
    np.testing.assert_array_equal(r.item_counts, np.bincount(ref.indices, minlength=r.n_items))


def test_matrix_chunks_are_sparse_coo_and_follow_row_edges():
    r = dmf.from_pandas(random_frame(n_users=50, n_items=20, seed=2), chunk_nnz=100)
    assert r.n_blocks > 1
    assert r.matrix.chunks[0] == tuple(np.diff(r.row_edges))
    blocks = [r.matrix.blocks[k].compute() for k in range(r.n_blocks)]
    assert all(isinstance(b, sparse.COO) for b in blocks)
    assert isinstance(r.matrix._meta, sparse.COO)


def test_ids_round_trip_codes_ids_codes():
    df = random_frame(n_users=30, n_items=12, seed=5)
    df["user"] = "user-" + df["user"].astype(str)
    df["item"] = df["item"] * 7 + 1000
    r = dmf.from_pandas(df)
    codes = np.arange(r.n_users)
    np.testing.assert_array_equal(r.user_codes(r.users[codes]), codes)
    np.testing.assert_array_equal(r.item_codes(r.items[np.arange(r.n_items)]), np.arange(r.n_items))
    # ids -> codes -> ids
    ids = df["user"].to_numpy()
    assert (r.users[r.user_codes(ids)] == ids).all()
    # codes follow sorted id order; unknown ids give -1
    assert list(r.users) == sorted(df["user"].unique())
    assert r.user_codes(["nobody"]).tolist() == [-1]
    out = r.to_pandas()
    merged = out.merge(df, on=["user", "item"], suffixes=("", "_in"))
    assert len(merged) == len(df)
    np.testing.assert_allclose(merged["rating"], merged["rating_in"])


def test_codes_are_int32_and_data_float32():
    r = dmf.from_pandas(random_frame(seed=6))
    b = r.blocks[0].compute()
    assert b.rows.dtype == np.int32 and b.cols.dtype == np.int32 and b.data.dtype == np.float32
    codes = r.to_pandas(codes=True)
    assert codes["user"].dtype == np.int32


def test_blocks_are_balanced_by_nnz_on_power_law_data():
    r = dmf.datasets.synthetic(n_users=3000, n_items=4000, nnz=120_000, seed=1, chunk_nnz=10_000)
    counts = np.array([b.compute().nnz for b in r.blocks])
    assert len(counts) == 12
    assert counts.max() <= 1.5 * counts.mean()
    # while a split by row count would be far from balanced on this data
    by_rows = np.add.reduceat(r.user_counts, np.linspace(0, r.n_users, 13)[:-1].astype(int))
    assert r.user_counts.max() > 10 * np.median(r.user_counts)
    assert by_rows.max() > counts.max()


def test_balanced_edges_bound():
    rng = np.random.default_rng(0)
    counts = (rng.pareto(1.2, 5000) * 10 + 1).astype(np.int64)
    for n in (2, 7, 30):
        edges = balanced_edges(counts, n)
        sums = np.add.reduceat(counts, edges[:-1])
        assert edges[0] == 0 and edges[-1] == len(counts)
        assert sums.max() <= counts.sum() / n + counts.max()


def test_chunk_nnz_controls_block_count():
    df = random_frame(n_users=100, n_items=50, density=0.2, seed=7)
    assert dmf.from_pandas(df, chunk_nnz=len(df)).n_blocks == 1
    assert dmf.from_pandas(df, chunk_nnz=-(-len(df) // 4)).n_blocks == 4


def test_col_csr_is_the_transpose():
    df = random_frame(n_users=40, n_items=30, seed=8)
    r = dmf.from_pandas(df, chunk_nnz=100)
    ref = r.to_scipy().T.tocsr()
    import dask

    blocks = dask.compute(r.col_csr(r.col_edges(3)))[0]
    got = sp.vstack([b.to_scipy() for b in blocks]).tocsr()
    assert (got != ref).nnz == 0
    rows = dask.compute(r.row_csr())[0]
    assert (sp.vstack([b.to_scipy() for b in rows]).tocsr() != r.to_scipy()).nnz == 0


def test_timestamps_matrix():
    df = random_frame(n_users=20, n_items=10, seed=9)
    df["ts"] = np.arange(len(df)) * 10
    r = dmf.from_pandas(df, timestamp="ts")
    assert r.has_timestamps
    ts = r.timestamps.compute().todense()
    u = r.user_codes(df["user"])
    i = r.item_codes(df["item"])
    np.testing.assert_array_equal(ts[u, i], df["ts"].to_numpy())


def test_check_ratings_rejects_non_ratings():
    from dmf.data._ratings import check_ratings

    with pytest.raises(dmf.RatingsError, match=r"must be a dmf\.Ratings"):
        check_ratings(pd.DataFrame())


def test_default_blocks_stay_within_1_5x_mean_with_a_heavy_user():
    """The default block count leaves room for the heaviest user."""
    import dask

    rng = np.random.default_rng(0)
    counts = np.r_[[30_000], rng.integers(50, 150, 2_000)]
    users = np.repeat(np.arange(len(counts)), counts)
    starts = rng.integers(0, 60_000, len(counts))
    items = np.concatenate(
        [(s + np.arange(c)) % 60_000 for s, c in zip(starts, counts, strict=True)]
    )
    df = pd.DataFrame({"user": users, "item": items, "rating": 1.0})
    # 8 threads would ask for 16 blocks: cut that fine, the heavy user's block breaks the bound
    naive = np.add.reduceat(counts, balanced_edges(counts, 16)[:-1])
    assert naive.max() > 1.5 * naive.mean()
    with dask.config.set(num_workers=8):
        r = dmf.from_pandas(df)
    sizes = np.array([b.compute().nnz for b in r.blocks])
    assert sizes.max() <= 1.5 * sizes.mean()
    assert r.n_blocks > 1
