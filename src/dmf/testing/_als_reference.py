"""Slow dense reference solvers of the ALS block kernels (plain NumPy).

The fast numba kernels in :mod:`dmf.kernels` are tested against these; they are
public so that code building on dmf can check its own fits the same way (as
``implicit`` keeps ``least_squares`` beside its fast path).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "reference_explicit",
    "reference_explicit_objective",
    "reference_ials",
    "reference_implicit",
]


def reference_explicit(
    R: np.ndarray,
    M: np.ndarray,
    Y: np.ndarray,
    yb: np.ndarray,
    mu: float,
    reg: float,
    reg_bias: float,
    weighted: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense reference of the explicit block solve: one ``numpy.linalg.lstsq`` per row.

    ``R`` dense ratings, ``M`` boolean mask of rated cells. Each row solves the
    regularised least squares as an ordinary one, stacking ``sqrt(D)`` under the
    features: ``min || [F; sqrt(D)] z - [t; 0] ||``.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.testing import reference_explicit
    >>> R = np.array([[4.0, 0.0], [0.0, 2.0]])
    >>> X, b = reference_explicit(R, R > 0, np.eye(2), np.zeros(2), 3.0, 0.1, 0.1)
    >>> X.shape, b.shape
    ((2, 2), (2,))
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


def reference_implicit(
    R: np.ndarray, M: np.ndarray, Y: np.ndarray, alpha: float, reg: float, weighted: bool = False
) -> np.ndarray:
    """Dense reference of the implicit block solve: ``(Y^T C_u Y + lam I)^-1 Y^T C_u p_u``.

    ``C_u`` is the dense diagonal of confidences over all columns (1 where unrated).

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.testing import reference_implicit
    >>> R = np.array([[1.0, 0.0], [0.0, 3.0]])
    >>> reference_implicit(R, R > 0, np.eye(2), 1.0, 0.5).round(3).tolist()
    [[0.8, 0.0], [0.0, 0.889]]
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


def reference_ials(
    R: np.ndarray,
    M: np.ndarray,
    Y: np.ndarray,
    alpha: float,
    a0: float,
    reg: float,
    reg_mode: int = 2,
    nu: float = 1.0,
) -> np.ndarray:
    """Dense reference of the iALS block solve (``a0``, ``reg_mode``): one ``lstsq`` per row.

    Every column ``j`` weighs ``w_j = c_j`` if rated, ``a0`` if not; the row solves
    ``min || [sqrt(w) Y; sqrt(lam) I] x - [sqrt(w) p; 0] ||`` as an ordinary least squares.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.testing import reference_ials, reference_implicit
    >>> R = np.array([[1.0, 0.0], [0.0, 3.0]])
    >>> Y = np.array([[1.0, 0.5], [0.2, 1.0]])
    >>> a = reference_ials(R, R > 0, Y, 1.0, 1.0, 0.5, reg_mode=0)  # a0 = 1, plain reg:
    >>> bool(np.allclose(a, reference_implicit(R, R > 0, Y, 1.0, 0.5)))  # Hu et al.
    True
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


def reference_explicit_objective(
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
    """The explicit objective the fit reports, from dense arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.testing import reference_explicit_objective
    >>> R = np.array([[4.0, 0.0], [0.0, 2.0]])
    >>> z, b = np.zeros((2, 1)), np.zeros(2)
    >>> reference_explicit_objective(R, R > 0, z, b, z, b, 3.0, 0.1, 0.1)
    2.0
    """
    pred = mu + bu[:, None] + bi[None, :] + X @ Y.T
    sse = float((((R - pred) ** 2) * M).sum())
    nu = M.sum(1) if weighted else (M.sum(1) > 0)
    ni = M.sum(0) if weighted else (M.sum(0) > 0)
    regs = reg * (nu * (X**2).sum(1)).sum() + reg_bias * (nu * bu**2).sum()
    regs += reg * (ni * (Y**2).sum(1)).sum() + reg_bias * (ni * bi**2).sum()
    return sse + float(regs)
