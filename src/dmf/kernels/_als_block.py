"""One ALS block solved: the rows of a CSR block against fixed other-side factors.

Plain NumPy around the numba kernels of :mod:`dmf.kernels._als`, no Dask: the
estimator runs it per block task, fold-in on a handful of new users.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dmf.kernels._als import explicit_block, implicit_block
from dmf.kernels._blas import one_blas_thread

__all__ = ["add", "gram_part", "solve_block"]

if TYPE_CHECKING:
    from dmf.data._blocks import CSR


def solve_block(
    csr: CSR,
    other: np.ndarray,
    other_bias: np.ndarray | None,
    gram: np.ndarray | None,
    warm: np.ndarray | None,
    warm_bias: np.ndarray | None,
    cfg: dict[str, Any],
    want_loss: bool,
) -> tuple[np.ndarray, np.ndarray | None, float, float]:
    """New factors (and biases) of one block's rows; returns ``(X, b, loss, reg_term)``."""
    dt = other.dtype.type
    n, k = csr.n_rows, other.shape[1]
    X = np.zeros((n, k), other.dtype) if warm is None else np.array(warm, other.dtype, copy=True)
    with one_blas_thread():
        if cfg["implicit"]:
            loss, reg_term = implicit_block(
                csr.indptr, csr.indices, csr.data, other, gram.astype(other.dtype),
                dt(cfg["alpha"]), dt(cfg["reg"]), cfg["weighted"], cfg["cg"], cfg["cg_steps"],
                cfg["nonnegative"], X, want_loss,
            )  # fmt: skip
            return X, None, float(loss), float(reg_term)
        b = np.zeros(n, other.dtype) if warm_bias is None else np.array(warm_bias, copy=True)
        loss, reg_term = explicit_block(
            csr.indptr, csr.indices, csr.data, other, other_bias, dt(cfg["mu"]), dt(cfg["reg"]),
            dt(cfg["reg_bias"]), cfg["weighted"], cfg["cg"], cfg["cg_steps"],
            cfg["nonnegative"], X, b, want_loss,
        )  # fmt: skip
    return X, b, float(loss), float(reg_term)


def gram_part(Y: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``Y[start:stop]ᵀ Y[start:stop]`` in float64 (one term of the shared ``YᵀY``)."""
    part = Y[start:stop].astype(np.float64)
    with one_blas_thread():
        return part.T @ part


def add(*parts: np.ndarray) -> np.ndarray:
    return sum(parts[1:], parts[0])
