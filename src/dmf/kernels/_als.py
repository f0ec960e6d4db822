"""ALS block kernels: solve every row of one CSR block against the other side's factors.

Two models, each with an exact (Gram + Cholesky) and a conjugate-gradient path:

- explicit, biased: row ``u`` solves ``z = [x_u, b_u]`` from features
  ``f_j = [y_j, 1]`` and targets ``t_j = r_uj - mu - b_j`` over its rated
  columns ``j``, minimising ``sum_j (t_j - f_j . z)^2 + lam ||x_u||^2 + lam_b b_u^2``
  with ``lam = reg * n_u`` (ALS-WR, ``weighted``) or ``reg``;
- implicit (Hu, Koren, Volinsky 2008, with the unobserved weight of Rendle et al.
  2022): confidence ``c = 1 + alpha r``, preference ``p = [r > 0]``; row ``u``
  minimises ``sum_rated c_uj (p_uj - x_u . y_j)^2 + a0 sum_unrated (x_u . y_j)^2
  + lam_u ||x_u||^2``, so the Gram is ``a0 YtY + sum_rated (c - a0) y y^T + lam_u I``
  with ``YtY`` shared by every row (computed once per half-sweep by the caller).
  ``lam_u`` is ``reg`` (``reg_mode`` 0), ``reg n_u^nu`` (1, ALS-WR) or
  ``reg (n_u + a0 n_other)^nu`` (2, frequency-scaled as Rendle et al.).

CG runs ``cg_steps`` steps warm-started from the incoming factors without forming
the Gram (Takacs et al. 2011, as the ``implicit`` library does); Cholesky gathers
each row's factor rows into a dense buffer and forms their Gram: one BLAS GEMM
call (made from numba through SciPy's Cython BLAS table) for a row of at most
``_BLAS_ROWS`` ratings, else only the lower triangle with a register-tiled numba
kernel over transposed chunks of ``_CHUNK`` ratings; then it factors the system
with a 4x4-tiled Cholesky built on the same micro-kernel. ``nonnegative`` uses
the Gram and projected coordinate descent (an exact NNLS solver for the factor
part; biases stay unconstrained).

Rows with no ratings get zero factors and zero bias (cold start). The kernels
write into ``X`` (and ``b``) in place and return the block's loss terms. No Dask here;
the slow dense ``_reference_*`` functions are what the tests compare against.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import njit
from numba.extending import get_cython_function_address

__all__ = ["explicit_block", "implicit_block"]

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


def explicit_block(
    indptr, indices, data, Y, yb, mu, reg, reg_bias, weighted, use_cg, cg_steps, nonneg, X, b,
    want_loss,
):  # fmt: skip
    """Solve the biased explicit model for every row of one CSR block, in place.

    Dispatches to one of two numba kernels (compiled separately, so a fit only
    compiles the path it uses).

    Parameters
    ----------
    indptr, indices, data : CSR arrays of the block (``indices`` index rows of ``Y``).
    Y, yb : the other side's factors ``(n_other, k)`` and biases ``(n_other,)``.
    mu, reg, reg_bias : scalars of ``Y``'s dtype.
    weighted : bool, ALS-WR (``reg * n_u``) when true.
    use_cg, cg_steps : conjugate gradient with this many steps instead of Cholesky.
    nonneg : non-negative factors (projected coordinate descent on the Gram).
    X, b : ``(n_rows, k)`` factors and ``(n_rows,)`` biases: warm start in, solution out.
    want_loss : also return the squared error over the block's ratings.

    Returns
    -------
    (sse, reg_term) : float
        ``sum (r - mu - b_u - b_j - x.y)^2`` (0 unless ``want_loss``) and
        ``sum lam ||x||^2 + lam_b b^2`` over the block's rows.
    """
    if use_cg and not nonneg:
        return _explicit_cg(
            indptr, indices, data, Y, yb, mu, reg, reg_bias, weighted, cg_steps, X, b, want_loss
        )
    return _explicit_gram(
        indptr, indices, data, Y, yb, mu, reg, reg_bias, weighted, nonneg, X, b, want_loss
    )


@njit(nogil=True, cache=False, fastmath=_FM)
def _explicit_row_loss(indices, lo, n, t, Y, z, k):
    sse = 0.0
    for idx in range(n):
        yj = Y[indices[lo + idx]]
        s = z[k]
        for q in range(k):
            s += yj[q] * z[q]
        e = t[idx] - s
        sse += e * e
    return sse


@njit(nogil=True, cache=False, fastmath=_FM)
def _explicit_gram(indptr, indices, data, Y, yb, mu, reg, reg_bias, weighted, nonneg, X, b,
                   want_loss):  # fmt: skip
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    k1 = k + 1
    dt = Y.dtype
    # One Gram of the rows [y_j (k), 1, t_j, zero padding] over a row's ratings gives
    # F^T F (features f_j = [y_j, 1]), the right-hand side F^T t and t.t at once.
    K = _round_up(k + 2, 4)
    Kc = _round_up(k1, 4)  # the system, padded with an identity block
    GT = np.zeros((K, _CHUNK + 8), dt)
    A = np.empty((K, K), dt)
    G = np.empty((_BLAS_ROWS, k + 2), dt)  # short rows: row-major gather + one GEMM
    C = np.empty((k + 2, k + 2), dt)
    ints = np.empty(3, np.int32)
    consts = np.array([1, 0], dt)
    flags = np.array([ord("N"), ord("T")], np.uint8)
    M = np.zeros((Kc, Kc), dt)
    L = np.empty((Kc, _round_up(Kc, 8)), dt)
    T = np.empty((4, 4), dt)
    rhs = np.zeros(Kc, dt)
    z = np.empty(_round_up(Kc, 8), dt)
    g = np.empty(k1, dt)
    for a in range(k1, Kc):
        M[a, a] = 1
    sse = 0.0
    reg_term = 0.0
    for u in range(n_rows):
        lo = indptr[u]
        hi = indptr[u + 1]
        n = hi - lo
        if n == 0:
            X[u, :] = 0
            b[u] = 0
            continue
        w = n if weighted else 1
        lam = reg * w
        lamb = reg_bias * w
        tt = 0.0
        if n <= _BLAS_ROWS:
            for idx in range(n):
                jj = lo + idx
                j = indices[jj]
                t = data[jj] - mu - yb[j]
                for q in range(k):
                    G[idx, q] = Y[j, q]
                G[idx, k] = 1
                G[idx, k + 1] = t
                tt += t * t
            _gram_blas(G, n, C, ints, consts, flags)
            S = C
        else:
            A[:] = 0
            for c0 in range(lo, hi, _CHUNK):
                nc = min(_CHUNK, hi - c0)
                _gather_t(GT, indices, c0, nc, Y)
                for idx in range(nc):
                    jj = c0 + idx
                    t = data[jj] - mu - yb[indices[jj]]
                    GT[k, idx] = 1
                    GT[k + 1, idx] = t
                    tt += t * t
                _gram_lower(GT, nc, A)
            S = A
        for a in range(k1):
            for q in range(a + 1):
                M[a, q] = S[a, q]
            rhs[a] = S[k + 1, a]
        for q in range(k):
            M[q, q] += lam
        M[k, k] += lamb
        if nonneg:
            for a in range(k1):
                for q in range(a + 1, k1):
                    M[a, q] = M[q, a]
            for q in range(k):
                z[q] = X[u, q]
            z[k] = b[u]
            _nnls_cd(M[:k1, :k1], rhs[:k1], z[:k1], k, g)
        else:
            L[:] = 0
            _chol_lower(M, L, T)
            _chol_solve_lower(L, rhs, z)
        xx = 0.0
        for q in range(k):
            X[u, q] = z[q]
            xx += z[q] * z[q]
        b[u] = z[k]
        penalty = lam * xx + lamb * z[k] * z[k]
        reg_term += penalty
        if want_loss:
            # ||t - F z||^2 = t.t - 2 z.rhs + z'(M - D)z, in O(k^2) rather than a pass over
            # the row (M from its lower triangle); float64 sums keep the cancellation harmless.
            zmz = 0.0
            zr = 0.0
            for a in range(k1):
                row = 0.0
                for q in range(a):
                    row += M[a, q] * z[q]
                zmz += (2.0 * row + M[a, a] * z[a]) * z[a]
                zr += rhs[a] * z[a]
            sse += max(tt - 2.0 * zr + zmz - penalty, 0.0)
    return sse, reg_term


@njit(nogil=True, cache=False, fastmath=_FM)
def _explicit_cg(indptr, indices, data, Y, yb, mu, reg, reg_bias, weighted, cg_steps, X, b,
                 want_loss):  # fmt: skip
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    k1 = k + 1
    dt = Y.dtype
    maxn = _max_count(indptr)
    t = np.empty(maxn, dt)
    z = np.empty(k1, dt)
    r = np.empty(k1, dt)
    p = np.empty(k1, dt)
    Ap = np.empty(k1, dt)
    D = np.empty(k1, dt)
    sse = 0.0
    reg_term = 0.0
    for u in range(n_rows):
        lo = indptr[u]
        n = indptr[u + 1] - lo
        if n == 0:
            X[u, :] = 0
            b[u] = 0
            continue
        w = n if weighted else 1
        lam = reg * w
        lamb = reg_bias * w
        for q in range(k):
            D[q] = lam
            z[q] = X[u, q]
        D[k] = lamb
        z[k] = b[u]
        # r = rhs - A z, without forming A
        r[:] = 0
        for idx in range(n):
            jj = lo + idx
            j = indices[jj]
            t[idx] = data[jj] - mu - yb[j]
            yj = Y[j]
            s = z[k]
            for q in range(k):
                s += yj[q] * z[q]
            e = t[idx] - s
            for q in range(k):
                r[q] += e * yj[q]
            r[k] += e
        rs = 0.0
        for q in range(k1):
            r[q] -= D[q] * z[q]
            p[q] = r[q]
            rs += r[q] * r[q]
        for _ in range(cg_steps):
            if not rs > 1e-30:
                break
            for q in range(k1):
                Ap[q] = D[q] * p[q]
            for idx in range(n):
                yj = Y[indices[lo + idx]]
                s = p[k]
                for q in range(k):
                    s += yj[q] * p[q]
                for q in range(k):
                    Ap[q] += s * yj[q]
                Ap[k] += s
            pAp = 0.0
            for q in range(k1):
                pAp += p[q] * Ap[q]
            if not pAp > 0:
                break
            a = rs / pAp
            rs_new = 0.0
            for q in range(k1):
                z[q] += a * p[q]
                r[q] -= a * Ap[q]
                rs_new += r[q] * r[q]
            beta = rs_new / rs
            for q in range(k1):
                p[q] = r[q] + beta * p[q]
            rs = rs_new
        xx = 0.0
        for q in range(k):
            X[u, q] = z[q]
            xx += z[q] * z[q]
        b[u] = z[k]
        reg_term += lam * xx + lamb * z[k] * z[k]
        if want_loss:
            sse += _explicit_row_loss(indices, lo, n, t, Y, z, k)
    return sse, reg_term


def implicit_block(
    indptr, indices, data, Y, YtY, alpha, a0, reg, reg_mode, nu, use_cg, cg_steps, nonneg, X,
    want_loss,
):  # fmt: skip
    """Solve the implicit-feedback model for every row of one CSR block, in place.

    ``YtY`` is the other side's ``Y^T Y``; ``a0`` in ``(0, 1]`` the weight of the
    unrated pairs (so every weight ``c - a0`` of a rated pair is >= 0); ``reg_mode``
    and ``nu`` choose ``lam_u`` (module docstring). ``X`` holds the warm start on
    entry and the solution on return. Dispatches to the CG or the Gram kernel.

    Returns
    -------
    (loss_rated, reg_term) : float
        ``sum_rated [c (p - s)^2 - a0 s^2]`` with ``s = x.y`` (0 unless ``want_loss``;
        the caller adds ``a0 trace(X^T X Y^T Y)`` for the full objective) and
        ``sum lam_u ||x_u||^2``.
    """
    if use_cg and not nonneg:
        return _implicit_cg(
            indptr, indices, data, Y, YtY, alpha, a0, reg, reg_mode, nu, cg_steps, X, want_loss
        )
    return _implicit_gram(
        indptr, indices, data, Y, YtY, alpha, a0, reg, reg_mode, nu, nonneg, X, want_loss
    )


@njit(nogil=True, cache=False)
def _row_lam(reg, n, n_other, a0, reg_mode, nu):
    """The row's penalty: ``reg``, ``reg n^nu`` or ``reg (n + a0 n_other)^nu``."""
    if reg_mode == 0:
        return reg
    if reg_mode == 1:
        return reg * n**nu
    return reg * (n + a0 * n_other) ** nu


@njit(nogil=True, cache=False, fastmath=_FM)
def _implicit_row_loss(indices, data, lo, n, alpha, a0, Y, x, k):
    loss = 0.0
    for idx in range(n):
        jj = lo + idx
        yj = Y[indices[jj]]
        c = 1 + alpha * data[jj]
        pref = 1.0 if data[jj] > 0 else 0.0
        s = 0.0
        for q in range(k):
            s += yj[q] * x[q]
        loss += c * (pref - s) * (pref - s) - a0 * s * s
    return loss


@njit(nogil=True, cache=False, fastmath=_FM)
def _implicit_gram(indptr, indices, data, Y, YtY, alpha, a0, reg, reg_mode, nu, nonneg, X,
                   want_loss):  # fmt: skip
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    dt = Y.dtype
    K = _round_up(k, 4)  # Gram rows sqrt(c - a0) y_j, zero padding; system padded by identity
    GT = np.zeros((K, _CHUNK + 8), dt)
    A = np.empty((K, K), dt)
    G = np.empty((_BLAS_ROWS, k), dt)  # short rows: row-major gather + one GEMM
    C = np.empty((k, k), dt)
    ints = np.empty(3, np.int32)
    consts = np.array([1, 0], dt)
    flags = np.array([ord("N"), ord("T")], np.uint8)
    M = np.zeros((K, K), dt)
    L = np.empty((K, _round_up(K, 8)), dt)
    T = np.empty((4, 4), dt)
    sc = np.empty(_CHUNK, dt)
    wp = np.empty(_CHUNK, dt)
    x = np.empty(_round_up(K, 8), dt)
    g = np.empty(k, dt)
    rhs = np.zeros(K, dt)
    for a in range(k, K):
        M[a, a] = 1
    loss = 0.0
    reg_term = 0.0
    for u in range(n_rows):
        lo = indptr[u]
        hi = indptr[u + 1]
        n = hi - lo
        if n == 0:
            X[u, :] = 0
            continue
        lam = _row_lam(reg, n, Y.shape[0], a0, reg_mode, nu)
        rhs[:] = 0
        if n <= _BLAS_ROWS:
            for idx in range(n):
                jj = lo + idx
                j = indices[jj]
                c = 1 + alpha * data[jj]
                s = np.sqrt(c - a0)
                for q in range(k):
                    G[idx, q] = s * Y[j, q]
                if data[jj] > 0:
                    for q in range(k):
                        rhs[q] += c * Y[j, q]
            _gram_blas(G, n, C, ints, consts, flags)
            S = C
        else:
            A[:] = 0
            for c0 in range(lo, hi, _CHUNK):
                nc = min(_CHUNK, hi - c0)
                _gather_t(GT, indices, c0, nc, Y)
                for idx in range(nc):
                    c = 1 + alpha * data[c0 + idx]
                    sc[idx] = np.sqrt(c - a0)
                    wp[idx] = c if data[c0 + idx] > 0 else 0
                for q in range(k):
                    s = rhs[q]
                    for idx in range(nc):
                        s += wp[idx] * GT[q, idx]
                        GT[q, idx] *= sc[idx]
                    rhs[q] = s
                _gram_lower(GT, nc, A)
            S = A
        for a in range(k):
            for q in range(a + 1):
                M[a, q] = S[a, q] + a0 * YtY[a, q]
            M[a, a] += lam
        if nonneg:
            for a in range(k):
                for q in range(a + 1, k):
                    M[a, q] = M[q, a]
            for q in range(k):
                x[q] = X[u, q]
            _nnls_cd(M[:k, :k], rhs[:k], x[:k], k, g)
        else:
            L[:] = 0
            _chol_lower(M, L, T)
            _chol_solve_lower(L, rhs, x)
        xx = 0.0
        for q in range(k):
            X[u, q] = x[q]
            xx += x[q] * x[q]
        reg_term += lam * xx
        if want_loss:
            loss += _implicit_row_loss(indices, data, lo, n, alpha, a0, Y, x, k)
    return loss, reg_term


@njit(nogil=True, cache=False, fastmath=_FM)
def _implicit_cg(indptr, indices, data, Y, YtY, alpha, a0, reg, reg_mode, nu, cg_steps, X,
                 want_loss):  # fmt: skip
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    dt = Y.dtype
    maxn = _max_count(indptr)
    cw = np.empty(maxn, dt)
    x = np.empty(k, dt)
    r = np.empty(k, dt)
    p = np.empty(k, dt)
    Ap = np.empty(k, dt)
    loss = 0.0
    reg_term = 0.0
    for u in range(n_rows):
        lo = indptr[u]
        n = indptr[u + 1] - lo
        if n == 0:
            X[u, :] = 0
            continue
        lam = _row_lam(reg, n, Y.shape[0], a0, reg_mode, nu)
        for q in range(k):
            x[q] = X[u, q]
        # r = b - A x = sum_rated [c p - (c - a0) s] y - a0 YtY x - lam x
        for a in range(k):
            s = 0.0
            for q in range(k):
                s += YtY[a, q] * x[q]
            r[a] = -a0 * s - lam * x[a]
        for idx in range(n):
            jj = lo + idx
            yj = Y[indices[jj]]
            c = 1 + alpha * data[jj]
            cw[idx] = c - a0
            pref = 1.0 if data[jj] > 0 else 0.0
            s = 0.0
            for q in range(k):
                s += yj[q] * x[q]
            coef = c * pref - (c - a0) * s
            for q in range(k):
                r[q] += coef * yj[q]
        rs = 0.0
        for q in range(k):
            p[q] = r[q]
            rs += r[q] * r[q]
        for _ in range(cg_steps):
            if not rs > 1e-30:
                break
            for a in range(k):
                s = 0.0
                for q in range(k):
                    s += YtY[a, q] * p[q]
                Ap[a] = a0 * s + lam * p[a]
            for idx in range(n):
                yj = Y[indices[lo + idx]]
                s = 0.0
                for q in range(k):
                    s += yj[q] * p[q]
                s *= cw[idx]
                for q in range(k):
                    Ap[q] += s * yj[q]
            pAp = 0.0
            for q in range(k):
                pAp += p[q] * Ap[q]
            if not pAp > 0:
                break
            a_ = rs / pAp
            rs_new = 0.0
            for q in range(k):
                x[q] += a_ * p[q]
                r[q] -= a_ * Ap[q]
                rs_new += r[q] * r[q]
            beta = rs_new / rs
            for q in range(k):
                p[q] = r[q] + beta * p[q]
            rs = rs_new
        xx = 0.0
        for q in range(k):
            X[u, q] = x[q]
            xx += x[q] * x[q]
        reg_term += lam * xx
        if want_loss:
            loss += _implicit_row_loss(indices, data, lo, n, alpha, a0, Y, x, k)
    return loss, reg_term


# ------------------------------------------------------------------ references
def _reference_explicit(
    R: np.ndarray,
    M: np.ndarray,
    Y: np.ndarray,
    yb: np.ndarray,
    mu: float,
    reg: float,
    reg_bias: float,
    weighted: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense reference of :func:`explicit_block`: one ``numpy.linalg.lstsq`` per row.

    ``R`` dense ratings, ``M`` boolean mask of rated cells. Each row solves the
    regularised least squares as an ordinary one, stacking ``sqrt(D)`` under the
    features: ``min || [F; sqrt(D)] z - [t; 0] ||``.
    """
    n, k = R.shape[0], Y.shape[1]
    X = np.zeros((n, k))
    b = np.zeros(n)
    for u in range(n):
        idx = np.flatnonzero(M[u])
        if idx.size == 0:
            continue
        w = idx.size if weighted else 1
        F = np.hstack([Y[idx].astype(np.float64), np.ones((idx.size, 1))])
        t = R[u, idx] - mu - yb[idx]
        d = np.sqrt(np.r_[np.full(k, reg * w), reg_bias * w])
        z = np.linalg.lstsq(np.vstack([F, np.diag(d)]), np.r_[t, np.zeros(k + 1)], rcond=None)[0]
        X[u], b[u] = z[:k], z[k]
    return X, b


def _reference_implicit(
    R: np.ndarray, M: np.ndarray, Y: np.ndarray, alpha: float, reg: float, weighted: bool = False
) -> np.ndarray:
    """Dense reference of :func:`implicit_block`: ``(Y^T C_u Y + lam I)^-1 Y^T C_u p_u`` per row.

    ``C_u`` is the dense diagonal of confidences over all columns (1 where unrated).
    """
    n, k = R.shape[0], Y.shape[1]
    Y = Y.astype(np.float64)
    X = np.zeros((n, k))
    for u in range(n):
        if not M[u].any():
            continue
        c = np.where(M[u], 1 + alpha * R[u], 1.0)
        pref = (M[u] & (R[u] > 0)).astype(np.float64)
        lam = reg * M[u].sum() if weighted else reg
        A = Y.T @ (c[:, None] * Y) + lam * np.eye(k)
        X[u] = np.linalg.solve(A, Y.T @ (c * pref))
    return X


def _reference_ials(
    R: np.ndarray,
    M: np.ndarray,
    Y: np.ndarray,
    alpha: float,
    a0: float,
    reg: float,
    reg_mode: int = 2,
    nu: float = 1.0,
) -> np.ndarray:
    """Dense reference of :func:`implicit_block` with ``a0`` and ``reg_mode``: one ``lstsq`` per row.

    Every column ``j`` weighs ``w_j = c_j`` if rated, ``a0`` if not; the row solves
    ``min || [sqrt(w) Y; sqrt(lam) I] x - [sqrt(w) p; 0] ||`` as an ordinary least squares.
    """
    n, k = R.shape[0], Y.shape[1]
    Y = Y.astype(np.float64)
    X = np.zeros((n, k))
    for u in range(n):
        n_u = int(M[u].sum())
        if n_u == 0:
            continue
        w = np.sqrt(np.where(M[u], 1 + alpha * R[u], a0))
        pref = (M[u] & (R[u] > 0)).astype(np.float64)
        lam = (reg, reg * n_u**nu, reg * (n_u + a0 * Y.shape[0]) ** nu)[reg_mode]
        A = np.vstack([w[:, None] * Y, np.sqrt(lam) * np.eye(k)])
        X[u] = np.linalg.lstsq(A, np.r_[w * pref, np.zeros(k)], rcond=None)[0]
    return X


def _reference_explicit_objective(
    R: np.ndarray,
    M: np.ndarray,
    X: np.ndarray,
    bu: np.ndarray,
    Y: np.ndarray,
    bi: np.ndarray,
    mu: float,
    reg: float,
    reg_bias: float,
    weighted: bool = True,
) -> float:
    """The explicit objective the fit reports, from dense arrays."""
    pred = mu + bu[:, None] + bi[None, :] + X @ Y.T
    sse = float((((R - pred) ** 2) * M).sum())
    nu = M.sum(1) if weighted else (M.sum(1) > 0)
    ni = M.sum(0) if weighted else (M.sum(0) > 0)
    regs = reg * (nu * (X**2).sum(1)).sum() + reg_bias * (nu * bu**2).sum()
    regs += reg * (ni * (Y**2).sum(1)).sum() + reg_bias * (ni * bi**2).sum()
    return sse + float(regs)
