"""Explicit, biased ALS block kernel (Gram + Cholesky, or conjugate gradient).

Row ``u`` solves ``z = [x_u, b_u]`` from features ``f_j = [y_j, 1]`` and targets
``t_j = r_uj - mu - b_j`` over its rated columns ``j``, minimising
``sum_j (t_j - f_j . z)^2 + lam ||x_u||^2 + lam_b b_u^2`` with ``lam = reg * n_u``
(ALS-WR, ``weighted``) or ``reg``. Rows with no ratings get zero factors and bias.
The slow reference is :func:`dmf.testing.reference_explicit`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dmf.kernels._als_linalg import (
    _BLAS_ROWS,
    _CHUNK,
    _FM,
    _chol_lower,
    _chol_solve_lower,
    _gather_t,
    _gram_blas,
    _gram_lower,
    _max_count,
    _nnls_cd,
    _round_up,
)

__all__ = ["explicit_block"]


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
