"""One ALS block solved: the rows of a CSR block against fixed other-side factors.

Plain NumPy around the numba kernels of :mod:`dmf.kernels._als_explicit` and
:mod:`dmf.kernels._als_implicit`, no Dask: the
estimator runs it per block task, fold-in on a handful of new users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dmf.kernels._als_explicit import explicit_block
from dmf.kernels._als_implicit import implicit_block
from dmf.kernels._blas import one_blas_thread

__all__ = ["SolveConfig", "add", "gram_part", "solve_block"]

if TYPE_CHECKING:
    from dmf.data._blocks import CSR


@dataclass(frozen=True)
class SolveConfig:
    """What one ALS block solve needs besides the data: the model's settings, resolved.

    ``reg_mode`` (implicit only): 0 plain ``reg``, 1 ``reg n_u^nu`` (ALS-WR),
    2 ``reg (n_u + a0 n_other)^nu`` (frequency-scaled); ``weighted`` is the
    explicit model's ALS-WR switch. ``unobserved_weight`` is ``a0``, ``mu`` the
    global mean the explicit targets are centred on.
    """

    implicit: bool = False
    reg: float = 0.12
    reg_bias: float = 0.03
    weighted: bool = True
    alpha: float = 0.0
    unobserved_weight: float = 1.0
    reg_mode: int = 0
    reg_exponent: float = 1.0
    cg: bool = False
    cg_steps: int = 3
    nonnegative: bool = False
    mu: float = 0.0


def solve_block(
    csr: CSR,
    warm: np.ndarray | None,
    warm_bias: np.ndarray | None,
    other: np.ndarray,
    other_bias: np.ndarray | None,
    gram: np.ndarray | None,
    cfg: SolveConfig,
    want_loss: bool,
) -> tuple[np.ndarray, np.ndarray | None, float, float]:
    """New factors (and biases) of one block's rows; returns ``(X, b, loss, reg_term)``.

    ``warm``/``warm_bias`` (or None: zeros) start CG and NNLS; ``other``/``other_bias``
    are the fixed side; ``gram`` is its ``YᵀY`` (implicit feedback only).
    """
    dt = other.dtype.type
    n, k = csr.n_rows, other.shape[1]
    X = np.zeros((n, k), other.dtype) if warm is None else np.array(warm, other.dtype, copy=True)
    with one_blas_thread():
        if cfg.implicit:
            loss, reg_term = implicit_block(
                csr.indptr, csr.indices, csr.data, other, gram.astype(other.dtype),
                dt(cfg.alpha), dt(cfg.unobserved_weight), dt(cfg.reg), cfg.reg_mode,
                dt(cfg.reg_exponent), cfg.cg, cfg.cg_steps, cfg.nonnegative, X, want_loss,
            )  # fmt: skip
            return X, None, float(loss), float(reg_term)
        b = np.zeros(n, other.dtype) if warm_bias is None else np.array(warm_bias, copy=True)
        loss, reg_term = explicit_block(
            csr.indptr, csr.indices, csr.data, other, other_bias, dt(cfg.mu), dt(cfg.reg),
            dt(cfg.reg_bias), cfg.weighted, cfg.cg, cfg.cg_steps, cfg.nonnegative, X, b,
            want_loss,
        )  # fmt: skip
    return X, b, float(loss), float(reg_term)


def gram_part(start: int, stop: int, Y: np.ndarray) -> np.ndarray:
    """``Y[start:stop]ᵀ Y[start:stop]`` in float64 (one term of the shared ``YᵀY``)."""
    part = Y[start:stop].astype(np.float64)
    with one_blas_thread():
        return part.T @ part


def add(*parts: np.ndarray) -> np.ndarray:
    return sum(parts[1:], parts[0])
