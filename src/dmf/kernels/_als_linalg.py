"""Dense per-row pieces of the ALS block kernels: Gram, Cholesky, NNLS.

Each row's Gram comes from one BLAS GEMM call (made from numba through SciPy's
Cython BLAS table) for a row of at most ``_BLAS_ROWS`` ratings, else from the
lower triangle by a register-tiled numba kernel over transposed chunks of
``_CHUNK`` ratings; the system is factored by a 4x4-tiled Cholesky built on the
same micro-kernel. Projected coordinate descent is the exact NNLS solve of the
non-negative models. No Dask here.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import njit
from numba.extending import get_cython_function_address

__all__ = ["_chol_lower", "_chol_solve_lower", "_gram_blas", "_gram_lower", "_nnls_cd"]

# Reassociation lets the dot-product loops vectorise; no 'nnan'/'ninf' so NaN and inf
# still propagate to the caller's finiteness check.
_FM = {"reassoc", "contract", "nsz", "arcp"}


# BLAS GEMM from SciPy's Cython table, callable from numba without the GIL or an
# allocation per call: for rows of up to _BLAS_ROWS ratings its AVX-512 micro-kernel
# beats the tiled kernel below even though it computes both triangles (measured: about
# 65 vs 30 GFLOP/s counted n k^2 at 50-70 ratings, rank 64, float32; the tiled kernel
# wins from about 250 ratings on).
_BLAS_ROWS = 192
_GEMM_T = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))
_sgemm = _GEMM_T(get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
_dgemm = _GEMM_T(get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))


@njit(nogil=True, cache=False)
def _gram_blas(G, n, C, ints, consts, flags):
    """``C = G[:n]^T G[:n]`` (``C`` square, C-ordered) by one BLAS GEMM call.

    ``G`` is row-major ``(>= n, ld)``; ``C`` is ``(m, m)`` with ``m <= ld``. ``ints``
    (int32, 3), ``consts`` (G's dtype: 1, 0) and ``flags`` (uint8: ord('N'), ord('T'))
    are caller-owned scratch so the call allocates nothing. Read as column-major, ``G``
    is ``G^T`` (``m x n``, leading dimension ``ld``), so ``N``/``T`` gives ``G^T G``.
    """
    ints[0] = C.shape[0]
    ints[1] = n
    ints[2] = G.shape[1]
    fn = _sgemm if G.itemsize == 4 else _dgemm
    fn(flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[0:].ctypes, ints[1:].ctypes,
       consts[0:].ctypes, G.ctypes, ints[2:].ctypes, G.ctypes, ints[2:].ctypes,
       consts[1:].ctypes, C.ctypes, ints[0:].ctypes)  # fmt: skip


# Rows of one Gram chunk: the Gram of a long row is accumulated over chunks of this many
# ratings so the gathered factors stay in L2. A multiple of 8; the buffer's row stride is
# padded by 8 (not a power of two) so the transposed gather does not thrash cache sets.
_CHUNK = 512


@njit(nogil=True, cache=False)
def _round_up(x, m):
    return (x + m - 1) // m * m


@njit(nogil=True, cache=False, fastmath=_FM)
def _tile_dots(P, a0, b0, m, C, c0, d0):
    """``C[c0 + r, d0 + s] += P[a0 + r, :m] . P[b0 + s, :m]`` for ``r, s < 4``: 16 dot products.

    The micro-kernel of the Gram and of the Cholesky factorisation: the inner loop
    over ``m`` vectorises with 16 accumulators, 8 loads for 16 multiply-adds.
    """
    # fmt: off
    c00 = C[c0, d0]; c01 = C[c0, d0 + 1]; c02 = C[c0, d0 + 2]; c03 = C[c0, d0 + 3]  # noqa: E702
    c10 = C[c0 + 1, d0]; c11 = C[c0 + 1, d0 + 1]; c12 = C[c0 + 1, d0 + 2]; c13 = C[c0 + 1, d0 + 3]  # noqa: E702
    c20 = C[c0 + 2, d0]; c21 = C[c0 + 2, d0 + 1]; c22 = C[c0 + 2, d0 + 2]; c23 = C[c0 + 2, d0 + 3]  # noqa: E702
    c30 = C[c0 + 3, d0]; c31 = C[c0 + 3, d0 + 1]; c32 = C[c0 + 3, d0 + 2]; c33 = C[c0 + 3, d0 + 3]  # noqa: E702
    for i in range(m):
        p0 = P[a0, i]; p1 = P[a0 + 1, i]; p2 = P[a0 + 2, i]; p3 = P[a0 + 3, i]  # noqa: E702
        q0 = P[b0, i]; q1 = P[b0 + 1, i]; q2 = P[b0 + 2, i]; q3 = P[b0 + 3, i]  # noqa: E702
        c00 += p0 * q0; c01 += p0 * q1; c02 += p0 * q2; c03 += p0 * q3  # noqa: E702
        c10 += p1 * q0; c11 += p1 * q1; c12 += p1 * q2; c13 += p1 * q3  # noqa: E702
        c20 += p2 * q0; c21 += p2 * q1; c22 += p2 * q2; c23 += p2 * q3  # noqa: E702
        c30 += p3 * q0; c31 += p3 * q1; c32 += p3 * q2; c33 += p3 * q3  # noqa: E702
    C[c0, d0] = c00; C[c0, d0 + 1] = c01; C[c0, d0 + 2] = c02; C[c0, d0 + 3] = c03  # noqa: E702
    C[c0 + 1, d0] = c10; C[c0 + 1, d0 + 1] = c11; C[c0 + 1, d0 + 2] = c12; C[c0 + 1, d0 + 3] = c13  # noqa: E702
    C[c0 + 2, d0] = c20; C[c0 + 2, d0 + 1] = c21; C[c0 + 2, d0 + 2] = c22; C[c0 + 2, d0 + 3] = c23  # noqa: E702
    C[c0 + 3, d0] = c30; C[c0 + 3, d0 + 1] = c31; C[c0 + 3, d0 + 2] = c32; C[c0 + 3, d0 + 3] = c33  # noqa: E702
    # fmt: on


@njit(nogil=True, cache=False, fastmath=_FM)
def _gram_lower(GT, n, A):
    """``A += GT[:, :n] GT[:, :n]^T`` on the 4x4 tiles on and below the diagonal.

    ``GT`` has a multiple of 4 rows and zeros in columns ``n`` to ``round8(n)``
    (so the dot loops need no remainder). Only the lower
    triangle of ``A`` (plus the upper halves of the diagonal tiles) is written:
    half the multiply-adds of a GEMM for the same symmetric result.
    """
    K = GT.shape[0]
    m = _round_up(n, 8)
    for a0 in range(0, K, 4):
        for b0 in range(0, a0 + 1, 4):
            _tile_dots(GT, a0, b0, m, A, a0, b0)


@njit(nogil=True, cache=False, fastmath=_FM)
def _gather_t(GT, indices, lo, n, Y):
    """``GT[q, i] = Y[indices[lo + i], q]`` for ``i < n``, ``q < k``; zeros to ``round8(n)``.

    Eight ratings at a time so each factor row is read once and each ``GT`` row is
    written eight contiguous values at a time.
    """
    k = Y.shape[1]
    last = lo + n - 1
    for i0 in range(0, n, 8):
        b = lo + i0
        j0 = indices[b]
        j1 = indices[min(b + 1, last)]
        j2 = indices[min(b + 2, last)]
        j3 = indices[min(b + 3, last)]
        j4 = indices[min(b + 4, last)]
        j5 = indices[min(b + 5, last)]
        j6 = indices[min(b + 6, last)]
        j7 = indices[min(b + 7, last)]
        # fmt: off
        for q in range(k):
            GT[q, i0] = Y[j0, q]; GT[q, i0 + 1] = Y[j1, q]  # noqa: E702
            GT[q, i0 + 2] = Y[j2, q]; GT[q, i0 + 3] = Y[j3, q]  # noqa: E702
            GT[q, i0 + 4] = Y[j4, q]; GT[q, i0 + 5] = Y[j5, q]  # noqa: E702
            GT[q, i0 + 6] = Y[j6, q]; GT[q, i0 + 7] = Y[j7, q]  # noqa: E702
        # fmt: on
    m = _round_up(n, 8)
    for q in range(GT.shape[0]):
        for i in range(n, m):
            GT[q, i] = 0


@njit(nogil=True, cache=False, fastmath=_FM)
def _chol_lower(M, L, T):
    """Cholesky ``M = L L^T`` from the lower triangle of ``M``, by 4x4 tiles.

    ``M`` is ``K x K`` with ``K`` a multiple of 4 (pad with an identity block);
    ``L`` must be all zero on entry with at least ``round8(K)`` columns (the zeros
    let every dot product run over a multiple of 8). Left-looking: each tile is
    ``M`` minus 16 dot products of already-computed rows (:func:`_tile_dots`), then
    a 4x4 factorisation or triangular solve. A pivot that is not positive (``M``
    not positive definite) gives NaN, caught by the caller's finiteness check.
    ``T`` (4x4) is scratch.
    """
    K = M.shape[0]
    for j0 in range(0, K, 4):
        m = _round_up(j0, 8)
        # diagonal tile: S = M - L_J L_J^T, then its 4x4 Cholesky (unrolled)
        for r in range(4):
            for c in range(4):
                T[r, c] = -M[j0 + r, j0 + c]
        _tile_dots(L, j0, j0, m, T, 0, 0)
        l00 = _pivot(-T[0, 0])
        d0 = 1 / l00
        l10 = -T[1, 0] * d0
        l20 = -T[2, 0] * d0
        l30 = -T[3, 0] * d0
        l11 = _pivot(-T[1, 1] - l10 * l10)
        d1 = 1 / l11
        l21 = (-T[2, 1] - l20 * l10) * d1
        l31 = (-T[3, 1] - l30 * l10) * d1
        l22 = _pivot(-T[2, 2] - l20 * l20 - l21 * l21)
        d2 = 1 / l22
        l32 = (-T[3, 2] - l30 * l20 - l31 * l21) * d2
        l33 = _pivot(-T[3, 3] - l30 * l30 - l31 * l31 - l32 * l32)
        d3 = 1 / l33
        L[j0, j0] = l00
        L[j0 + 1, j0] = l10
        L[j0 + 1, j0 + 1] = l11
        L[j0 + 2, j0] = l20
        L[j0 + 2, j0 + 1] = l21
        L[j0 + 2, j0 + 2] = l22
        L[j0 + 3, j0] = l30
        L[j0 + 3, j0 + 1] = l31
        L[j0 + 3, j0 + 2] = l32
        L[j0 + 3, j0 + 3] = l33
        # tiles below: S = M - L_I L_J^T, then L_I,J = S L_J,J^-T (unrolled substitution)
        for i0 in range(j0 + 4, K, 4):
            for r in range(4):
                for c in range(4):
                    T[r, c] = -M[i0 + r, j0 + c]
            _tile_dots(L, i0, j0, m, T, 0, 0)
            for r in range(4):
                x0 = -T[r, 0] * d0
                x1 = (-T[r, 1] - x0 * l10) * d1
                x2 = (-T[r, 2] - x0 * l20 - x1 * l21) * d2
                x3 = (-T[r, 3] - x0 * l30 - x1 * l31 - x2 * l32) * d3
                L[i0 + r, j0] = x0
                L[i0 + r, j0 + 1] = x1
                L[i0 + r, j0 + 2] = x2
                L[i0 + r, j0 + 3] = x3


@njit(nogil=True, cache=False)
def _pivot(d):
    """``sqrt(d)``, NaN unless ``d > 0`` (a matrix that is not positive definite)."""
    if not d > 0:
        d = -1 - d * d  # negative or NaN, in d's own dtype; its square root is NaN
    return np.sqrt(d)


@njit(nogil=True, cache=False, fastmath=_FM)
def _chol_solve_lower(L, rhs, z):
    """Solve ``L L^T z = rhs`` (``L`` from :func:`_chol_lower`, zero above the diagonal).

    ``z`` needs ``L.shape[1]`` (``>= round8(K)``) entries; those past ``K`` are set to zero.
    """
    K = L.shape[0]
    for i in range(z.shape[0]):
        z[i] = 0
    for i in range(K):
        # z[i:] is still zero and so is L[i, i + 1:], so the dot may run to round8(i)
        s = z[i]
        for p in range(_round_up(i, 8)):
            s += L[i, p] * z[p]
        z[i] = (rhs[i] - s) / L[i, i]
    for i in range(K - 1, -1, -1):
        zi = z[i] / L[i, i]
        z[i] = zi
        for p in range(i):
            z[p] -= zi * L[i, p]


@njit(nogil=True, cache=False)
def _nnls_cd(A, rhs, z, n_constrained, g):
    """Minimise ``z'Az/2 - rhs'z`` with ``z[:n_constrained] >= 0`` by coordinate descent.

    Warm-started from ``z`` (projected first); stops when no coordinate moves by
    more than ``1e-7`` of the largest one, or after 500 sweeps.
    """
    k = A.shape[0]
    for a in range(n_constrained):
        if z[a] < 0:
            z[a] = 0
    for a in range(k):
        s = -rhs[a]
        for q in range(k):
            s += A[a, q] * z[q]
        g[a] = s
    for _ in range(500):
        moved = 0.0
        big = 1e-30
        for a in range(k):
            new = z[a] - g[a] / A[a, a]
            if a < n_constrained and new < 0:
                new = 0.0
            d = new - z[a]
            if d != 0:
                z[a] = new
                for q in range(k):
                    g[q] += d * A[a, q]
                moved = max(moved, abs(d))
            big = max(big, abs(z[a]))
        if not moved > 1e-7 * big:
            break


@njit(nogil=True, cache=False)
def _max_count(indptr):
    m = 0
    for u in range(indptr.shape[0] - 1):
        m = max(m, indptr[u + 1] - indptr[u])
    return m
