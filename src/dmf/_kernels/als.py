"""ALS block kernels: solve every row of one CSR block against the other side's factors.

Two models, each with an exact (Gram + Cholesky) and a conjugate-gradient path:

- explicit, biased: row ``u`` solves ``z = [x_u, b_u]`` from features
  ``f_j = [y_j, 1]`` and targets ``t_j = r_uj - mu - b_j`` over its rated
  columns ``j``, minimising ``sum_j (t_j - f_j . z)^2 + lam ||x_u||^2 + lam_b b_u^2``
  with ``lam = reg * n_u`` (ALS-WR, ``weighted``) or ``reg``;
- implicit (Hu, Koren, Volinsky 2008): confidence ``c = 1 + alpha r``,
  preference ``p = [r > 0]``; row ``u`` minimises
  ``sum_all_j c_uj (p_uj - x_u . y_j)^2 + lam ||x_u||^2`` where unrated columns
  have ``c = 1, p = 0``, so the Gram is ``YtY + sum_rated (c - 1) y y^T + lam I``
  with ``YtY`` shared by every row (computed once per half-sweep by the caller).

CG runs ``cg_steps`` steps warm-started from the incoming factors without forming
the Gram (Takacs et al. 2011, as the ``implicit`` library does); Cholesky gathers
the block's factor rows into a dense buffer and forms the Gram with one BLAS call
per row. ``nonnegative`` uses the Gram and projected coordinate descent (an exact
NNLS solver for the factor part; biases stay unconstrained).

Rows with no ratings get zero factors and zero bias (cold start). The kernels
write into ``X`` (and ``b``) in place and return the block's loss terms. No Dask here;
the slow dense ``_reference_*`` functions are what the tests compare against.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["explicit_block", "implicit_block"]

# Reassociation lets the dot-product loops vectorise; no 'nnan'/'ninf' so NaN and inf
# still propagate to the caller's finiteness check.
_FM = {"reassoc", "contract", "nsz", "arcp"}


@njit(nogil=True, cache=False, fastmath=_FM)
def _chol_solve(A, rhs, L, z):
    """Solve ``A z = rhs`` by Cholesky (``A`` symmetric positive definite); ``L`` is scratch.

    A matrix that is not positive definite yields NaN in ``z`` (caught by the caller).
    """
    k = A.shape[0]
    for j in range(k):
        Lj = L[j]
        d = A[j, j]
        for p in range(j):
            d -= Lj[p] * Lj[p]
        if not d > 0:
            d = np.nan
        d = np.sqrt(d)
        Lj[j] = d
        inv = 1.0 / d
        for i in range(j + 1, k):
            Li = L[i]
            v = A[i, j]
            for p in range(j):
                v -= Li[p] * Lj[p]
            Li[j] = v * inv
    for i in range(k):
        s = rhs[i]
        Li = L[i]
        for p in range(i):
            s -= Li[p] * z[p]
        z[i] = s / Li[i]
    for i in range(k - 1, -1, -1):
        s = z[i]
        for p in range(i + 1, k):
            s -= L[p, i] * z[p]
        z[i] = s / L[i, i]


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
    maxn = _max_count(indptr)
    G = np.empty((maxn, k1), dt)
    t = np.empty(maxn, dt)
    L = np.empty((k1, k1), dt)
    z = np.empty(k1, dt)
    g = np.empty(k1, dt)
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
        for idx in range(n):
            jj = lo + idx
            j = indices[jj]
            t[idx] = data[jj] - mu - yb[j]
            yj = Y[j]
            for q in range(k):
                G[idx, q] = yj[q]
            G[idx, k] = 1
        Gn = G[:n]
        A = np.dot(Gn.T, Gn)
        rhs = np.dot(Gn.T, t[:n])
        if want_loss:
            tt = 0.0
            for idx in range(n):
                tt += t[idx] * t[idx]
        for q in range(k):
            A[q, q] += lam
        A[k, k] += lamb
        if nonneg:
            for q in range(k):
                z[q] = X[u, q]
            z[k] = b[u]
            _nnls_cd(A, rhs, z, k, g)
        else:
            _chol_solve(A, rhs, L, z)
        xx = 0.0
        for q in range(k):
            X[u, q] = z[q]
            xx += z[q] * z[q]
        b[u] = z[k]
        penalty = lam * xx + lamb * z[k] * z[k]
        reg_term += penalty
        if want_loss:
            # ||t - G z||^2 = t.t - 2 z.rhs + z'(A - D)z, in O(k^2) rather than a pass over
            # the row; float64 sums keep the cancellation harmless.
            zaz = 0.0
            zr = 0.0
            for a in range(k1):
                row = 0.0
                for q in range(k1):
                    row += A[a, q] * z[q]
                zaz += row * z[a]
                zr += rhs[a] * z[a]
            sse += max(tt - 2.0 * zr + zaz - penalty, 0.0)
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
    indptr, indices, data, Y, YtY, alpha, reg, weighted, use_cg, cg_steps, nonneg, X, want_loss
):
    """Solve the implicit-feedback model for every row of one CSR block, in place.

    ``YtY`` is the other side's ``Y^T Y``. ``X`` holds the warm start on entry
    and the solution on return. Dispatches to the CG or the Gram kernel.

    Returns
    -------
    (loss_rated, reg_term) : float
        ``sum_rated [c (p - s)^2 - s^2]`` with ``s = x.y`` (0 unless ``want_loss``;
        the caller adds ``trace(X^T X Y^T Y)`` for the full objective) and
        ``sum lam ||x||^2``.
    """
    if use_cg and not nonneg:
        return _implicit_cg(
            indptr, indices, data, Y, YtY, alpha, reg, weighted, cg_steps, X, want_loss
        )
    return _implicit_gram(indptr, indices, data, Y, YtY, alpha, reg, weighted, nonneg, X, want_loss)


@njit(nogil=True, cache=False, fastmath=_FM)
def _implicit_row_loss(indices, data, lo, n, alpha, Y, x, k):
    loss = 0.0
    for idx in range(n):
        jj = lo + idx
        yj = Y[indices[jj]]
        c = 1 + alpha * data[jj]
        pref = 1.0 if data[jj] > 0 else 0.0
        s = 0.0
        for q in range(k):
            s += yj[q] * x[q]
        loss += c * (pref - s) * (pref - s) - s * s
    return loss


@njit(nogil=True, cache=False, fastmath=_FM)
def _implicit_gram(indptr, indices, data, Y, YtY, alpha, reg, weighted, nonneg, X, want_loss):
    n_rows = indptr.shape[0] - 1
    k = Y.shape[1]
    dt = Y.dtype
    maxn = _max_count(indptr)
    G = np.empty((maxn, k), dt)
    L = np.empty((k, k), dt)
    x = np.empty(k, dt)
    g = np.empty(k, dt)
    rhs = np.empty(k, dt)
    loss = 0.0
    reg_term = 0.0
    for u in range(n_rows):
        lo = indptr[u]
        n = indptr[u + 1] - lo
        if n == 0:
            X[u, :] = 0
            continue
        lam = reg * n if weighted else reg
        rhs[:] = 0
        for idx in range(n):
            jj = lo + idx
            yj = Y[indices[jj]]
            c = 1 + alpha * data[jj]
            sc = np.sqrt(c - 1)
            for q in range(k):
                G[idx, q] = sc * yj[q]
            if data[jj] > 0:
                for q in range(k):
                    rhs[q] += c * yj[q]
        Gn = G[:n]
        A = np.dot(Gn.T, Gn)
        for a in range(k):
            for q in range(k):
                A[a, q] += YtY[a, q]
            A[a, a] += lam
        if nonneg:
            for q in range(k):
                x[q] = X[u, q]
            _nnls_cd(A, rhs, x, k, g)
        else:
            _chol_solve(A, rhs, L, x)
        xx = 0.0
        for q in range(k):
            X[u, q] = x[q]
            xx += x[q] * x[q]
        reg_term += lam * xx
        if want_loss:
            loss += _implicit_row_loss(indices, data, lo, n, alpha, Y, x, k)
    return loss, reg_term


@njit(nogil=True, cache=False, fastmath=_FM)
def _implicit_cg(indptr, indices, data, Y, YtY, alpha, reg, weighted, cg_steps, X, want_loss):
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
        lam = reg * n if weighted else reg
        for q in range(k):
            x[q] = X[u, q]
        # r = b - A x = sum_rated [c p - (c - 1) s] y - YtY x - lam x
        for a in range(k):
            s = 0.0
            for q in range(k):
                s += YtY[a, q] * x[q]
            r[a] = -s - lam * x[a]
        for idx in range(n):
            jj = lo + idx
            yj = Y[indices[jj]]
            c = 1 + alpha * data[jj]
            cw[idx] = c - 1
            pref = 1.0 if data[jj] > 0 else 0.0
            s = 0.0
            for q in range(k):
                s += yj[q] * x[q]
            coef = c * pref - (c - 1) * s
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
                Ap[a] = s + lam * p[a]
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
            loss += _implicit_row_loss(indices, data, lo, n, alpha, Y, x, k)
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
