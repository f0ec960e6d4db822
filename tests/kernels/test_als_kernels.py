"""ALS Cholesky kernel pieces against NumPy: tiled Gram, transposed gather, tiled Cholesky.

The exact solver builds each row's Gram with a register-tiled lower-triangle kernel over
chunks of ratings and factors it by 4x4 tiles; these tests pin each piece and the chunked
path (rows longer than one chunk) of both block kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

from dmf.kernels._als_explicit import explicit_block
from dmf.kernels._als_implicit import implicit_block
from dmf.kernels._als_linalg import (
    _BLAS_ROWS,
    _CHUNK,
    _chol_lower,
    _chol_solve_lower,
    _gather_t,
    _gram_blas,
    _gram_lower,
    _round_up,
)
from dmf.testing import reference_explicit, reference_ials, reference_implicit

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 100, _CHUNK])
@pytest.mark.parametrize("rows", [4, 12, 68])
def test_gram_lower_equals_numpy(dt, n, rows):
    rng = np.random.default_rng(n + rows)
    GT = np.zeros((rows, _CHUNK + 8), dt)
    GT[:, :n] = rng.standard_normal((rows, n))
    A0 = rng.standard_normal((rows, rows)).astype(dt)
    A = A0.copy()
    _gram_lower(GT, n, A)
    ref = A0.astype(np.float64) + GT[:, :n].astype(np.float64) @ GT[:, :n].T.astype(np.float64)
    low = np.tril_indices(rows)
    scale = max(1.0, np.abs(ref).max())
    np.testing.assert_allclose(A[low] / scale, ref[low] / scale, rtol=0, atol=RTOL[dt] * 10)
    # strictly above the diagonal 4x4 tiles nothing is touched
    tiles = np.arange(rows) // 4
    above = tiles[:, None] < tiles[None, :]
    np.testing.assert_array_equal(A[above], A0[above])


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", [1, 5, 8, 13, 200])
def test_gather_t_transposes_rows_and_zero_pads(dt, n):
    rng = np.random.default_rng(n)
    Y = rng.standard_normal((50, 6)).astype(dt)
    indices = rng.integers(0, 50, 3 + n).astype(np.int32)
    GT = np.full((8, _CHUNK + 8), np.nan, dt)
    _gather_t(GT, indices, 3, n, Y)
    np.testing.assert_array_equal(GT[:6, :n], Y[indices[3 : 3 + n]].T)
    assert not GT[:, n : _round_up(n, 8)].any()


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("k", [1, 4, 5, 13, 68])
def test_tiled_cholesky_solves_spd_system(dt, k):
    rng = np.random.default_rng(k)
    K = _round_up(k, 4)
    B = rng.standard_normal((3 * k + 2, k))
    S = B.T @ B + 0.5 * np.eye(k)
    M = np.eye(K, dtype=dt)
    M[:k, :k] = S
    M[np.triu_indices(K, 1)] = np.nan  # only the lower triangle may be read
    rhs = np.zeros(K, dt)
    rhs[:k] = rng.standard_normal(k)
    L = np.zeros((K, _round_up(K, 8)), dt)
    z = np.full(_round_up(K, 8), np.nan, dt)
    _chol_lower(M, L, np.empty((4, 4), dt))
    np.testing.assert_allclose(
        L[:k, :k],
        np.linalg.cholesky(S),
        rtol=1e-3 if dt is np.float32 else 1e-10,
        atol=1e-4 if dt is np.float32 else 1e-10,
    )
    assert not np.triu(L[:K, :K], 1).any()
    _chol_solve_lower(L, rhs, z)
    want = np.linalg.solve(S, rhs[:k].astype(np.float64))
    np.testing.assert_allclose(
        z[:k],
        want,
        rtol=0,
        atol=(1e-3 if dt is np.float32 else 1e-9) * max(1.0, np.abs(want).max()),
    )
    assert not z[k:].any()


@pytest.mark.parametrize("dt", DTYPES)
def test_tiled_cholesky_not_positive_definite_gives_nan(dt):
    M = np.eye(8, dtype=dt)
    M[5, 5] = -1.0
    L = np.zeros((8, 8), dt)
    z = np.zeros(8, dt)
    _chol_lower(M, L, np.empty((4, 4), dt))
    _chol_solve_lower(L, np.ones(8, dt), z)
    assert np.isnan(z).any()


LONG = [2 * _CHUNK + 37, _CHUNK, 3]  # longer than two chunks, exactly one, short
EDGE = [_BLAS_ROWS, _BLAS_ROWS + 1, 1]  # either side of the BLAS / tiled-Gram switch


def _long_rows(dt, k=5, n_items=3 * _CHUNK, seed=0, counts=LONG):
    """Rows with the given rating counts over ``n_items`` items, and the dense references."""
    rng = np.random.default_rng(seed)
    R = np.zeros((len(counts), n_items))
    Mask = np.zeros((len(counts), n_items), bool)
    cols = []
    for u, c in enumerate(counts):
        idx = np.sort(rng.choice(n_items, c, replace=False))
        Mask[u, idx] = True
        R[u, idx] = rng.integers(1, 11, c) / 2
        cols.append(idx)
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    indices = np.concatenate(cols).astype(np.int32)
    data = R[Mask].astype(np.float32)
    Y = (0.3 * rng.standard_normal((n_items, k))).astype(dt)
    yb = (0.2 * rng.standard_normal(n_items)).astype(dt)
    return indptr, indices, data, Y, yb, R, Mask


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("counts", [LONG, EDGE], ids=["long", "edge"])
def test_explicit_cholesky_rows_longer_than_a_chunk(dt, weighted, counts):
    indptr, indices, data, Y, yb, R, Mask = _long_rows(dt, counts=counts)
    X = np.zeros((len(indptr) - 1, Y.shape[1]), dt)
    b = np.zeros(len(indptr) - 1, dt)
    sse, _ = explicit_block(
        indptr, indices, data, Y, yb, dt(3.2), dt(0.1), dt(0.05), weighted, False, 1, False,
        X, b, True,
    )  # fmt: skip
    Xr, br = reference_explicit(R, Mask, Y.astype(np.float64), yb, 3.2, 0.1, 0.05, weighted)
    tol = 2e-4 if dt is np.float32 else 1e-9
    np.testing.assert_allclose(X, Xr, rtol=tol, atol=tol)
    np.testing.assert_allclose(b, br, rtol=tol, atol=tol)
    pred = 3.2 + br[:, None] + yb[None, :] + Xr @ Y.astype(np.float64).T
    ref_sse = float((((R - pred) ** 2) * Mask).sum())
    assert sse == pytest.approx(ref_sse, rel=1e-3 if dt is np.float32 else 1e-8)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("counts", [LONG, EDGE], ids=["long", "edge"])
def test_implicit_cholesky_rows_longer_than_a_chunk(dt, counts):
    indptr, indices, data, Y, _, R, Mask = _long_rows(dt, k=6, seed=1, counts=counts)
    data = (data > 2.5).astype(np.float32) * data  # some zero-preference ratings
    R = np.zeros_like(R)
    R[Mask] = data
    X = np.zeros((len(indptr) - 1, Y.shape[1]), dt)
    YtY = Y.astype(np.float64).T @ Y.astype(np.float64)
    implicit_block(
        indptr, indices, data, Y, YtY.astype(dt), dt(2.0), dt(1.0), dt(0.3), 0, dt(1.0), False,
        1, False, X, False,
    )  # fmt: skip
    Xr = reference_implicit(R, Mask, Y.astype(np.float64), 2.0, 0.3)
    tol = 5e-4 if dt is np.float32 else 1e-9
    np.testing.assert_allclose(X, Xr, rtol=tol, atol=tol)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 50, _BLAS_ROWS])
def test_gram_blas_equals_numpy(dt, n):
    rng = np.random.default_rng(n)
    G = rng.standard_normal((_BLAS_ROWS, 9)).astype(dt)
    C = np.full((7, 7), np.nan, dt)
    _gram_blas(G, n, C, np.empty(3, np.int32), np.array([1, 0], dt), np.frombuffer(b"NT", np.uint8))
    ref = G[:n, :7].astype(np.float64).T @ G[:n, :7].astype(np.float64)
    np.testing.assert_allclose(C, ref, rtol=0, atol=RTOL[dt] * max(1.0, n) * 10)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize(
    ("a0", "reg_mode", "nu"), [(0.1, 2, 1.0), (0.35, 2, 0.7), (1.0, 1, 1.0), (0.05, 0, 1.0)]
)
def test_implicit_unobserved_weight_and_frequency_reg_equal_lstsq(dt, solver, a0, reg_mode, nu):
    """The iALS row solve: unrated pairs weigh ``a0``, ``lam_u = reg (n_u + a0 n)^nu``."""
    indptr, indices, data, Y, _, R, Mask = _long_rows(dt, k=6, seed=3, counts=EDGE)
    data = (data > 2.5).astype(np.float32) * data  # some zero-preference ratings
    R = np.zeros_like(R)
    R[Mask] = data
    X = np.zeros((len(indptr) - 1, Y.shape[1]), dt)
    YtY = Y.astype(np.float64).T @ Y.astype(np.float64)
    cg = solver == "cg"
    implicit_block(
        indptr, indices, data, Y, YtY.astype(dt), dt(0.5), dt(a0), dt(0.01), reg_mode, dt(nu), cg,
        60, False, X, False,
    )  # fmt: skip
    Xr = reference_ials(R, Mask, Y.astype(np.float64), 0.5, a0, 0.01, reg_mode, nu)
    tol = 2e-3 if dt is np.float32 else (1e-6 if cg else 1e-9)
    scale = np.abs(Xr).max()
    np.testing.assert_allclose(X / scale, Xr / scale, rtol=tol, atol=tol)
