"""Implicit-feedback ALS block kernel (iALS: Gram + Cholesky, or conjugate gradient).

Hu, Koren & Volinsky (2008) with the unobserved weight and frequency-scaled
regularisation of Rendle et al. (2022): confidence ``c = 1 + alpha r``,
preference ``p = [r > 0]``; row ``u`` minimises
``sum_rated c_uj (p_uj - x_u . y_j)^2 + a0 sum_unrated (x_u . y_j)^2 + lam_u ||x_u||^2``,
so its Gram is ``a0 YtY + sum_rated (c - a0) y y^T + lam_u I`` with ``YtY`` shared
by every row (computed once per half-sweep by the caller). ``lam_u`` is ``reg``
(``reg_mode`` 0), ``reg n_u^nu`` (1, ALS-WR) or ``reg (n_u + a0 n_other)^nu``
(2, frequency-scaled). CG runs ``cg_steps`` steps warm-started from the incoming
factors without forming the Gram (Takacs et al. 2011, as the ``implicit`` library
does). The slow reference is :func:`dmf.testing.reference_ials`.
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

__all__ = ["implicit_block"]


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
