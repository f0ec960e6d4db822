"""Fold-in of one user's history against the fixed item side, as ``model.fold_in`` solves it.

``model.fold_in`` is built for batches: each call forms the implicit Gram
``YᵀY`` over every item (O(n_items · rank²)) and its numba kernels compile on
first use in each process (seconds). A server folds in one user per event, so
it keeps ``YᵀY`` and solves the same normal equations with NumPy (float64):

- implicit ALS: ``(YᵀY + Σ_j (c_j - 1) y_j y_jᵀ + λ I) x = Σ_{j: r_j > 0} c_j y_j``
  with ``c_j = 1 + α r_j`` and ``λ = reg · n_u`` (ALS-WR) or ``reg``;
- explicit (biased) ALS and other factor models solved by the ALS user step:
  features ``[y_j, 1]``, targets ``r_j - μ - b_j``, ridge ``reg · w`` on the
  factors and ``reg_bias · w`` on the bias (``w = n_u`` under ALS-WR, else 1);
- a bias-only model: ``b_u = Σ_j (r_j - μ - b_j) / (reg_user + n_u)``.

Models these do not cover (a custom user step, non-negative factors) go
through ``model.fold_in`` itself. The hyper-parameters are read exactly as
``model.fold_in`` reads them; tests check both agree to 1e-5.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import dmf

__all__ = ["Folder"]


def _as32(histories: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    # weights as float32 first: the ALS kernels see them in the factors' precision
    return [(c, np.asarray(w, np.float32)) for c, w in histories]


class Folder:
    """Solves augmented user vectors ``[x_u, μ + b_u, 1]`` from ``(item codes, weights)``."""

    def __init__(self, model: Any, probe: Any) -> None:
        self.model = model
        self.probe = probe
        self.mu = float(model.global_mean_)
        self.bi = np.asarray(model.item_bias_, dtype=np.float64)
        V = getattr(model, "item_factors_", None)
        self.V = None if V is None else np.asarray(V, dtype=np.float64)
        self.rank = 0 if V is None else V.shape[1]
        self.implicit = bool(getattr(model, "implicit", False))
        custom = getattr(model, "_fold_in_users", None) is not None
        self.solve: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
        if custom or bool(getattr(model, "nonnegative", False)):
            self.solve = None  # model.fold_in's own path
        elif self.V is None:
            self.reg_user = float(getattr(model, "reg_user", 0.0))
            self.solve = self._baseline
        else:
            reg = float(getattr(model, "reg", 0.1))
            reg_bias = getattr(model, "reg_bias", None)
            weighted = getattr(model, "weighted_reg", None)
            self.reg = reg
            self.reg_bias = reg if reg_bias is None else float(reg_bias)
            self.alpha = float(getattr(model, "alpha", 0.0))
            self.weighted = (not self.implicit) if weighted is None else bool(weighted)
            if self.implicit:
                V32 = np.asarray(V)
                # the Gram in float64, rounded to the factors' dtype as the ALS kernels use it
                gram = V32.T.astype(np.float64) @ V32.astype(np.float64)
                self.gram = gram.astype(V32.dtype).astype(np.float64)
                self.solve = self._implicit
            else:
                self.solve = self._explicit
        lo, hi = (float(v) for v in model.rating_scale_)
        self.scale = (lo, hi)

    def _check(self, weights: np.ndarray) -> None:
        lo, hi = self.scale
        if np.isfinite(lo) and np.isfinite(hi):
            out = (weights < lo) | (weights > hi)
            if out.any():
                raise dmf.RatingsError(
                    f"{int(out.sum())} weight(s) outside the model's scale [{lo}, {hi}] "
                    f"(first: {', '.join(map(str, weights[out][:5].tolist()))})"
                )

    def _baseline(self, codes: np.ndarray, r: np.ndarray) -> np.ndarray:
        b = (r - self.mu - self.bi[codes]).sum() / (self.reg_user + len(codes))
        return np.array([self.mu + b, 1.0])

    def _implicit(self, codes: np.ndarray, r: np.ndarray) -> np.ndarray:
        Y = self.V[codes]
        c = 1.0 + self.alpha * r
        A = self.gram + (Y.T * (c - 1.0)) @ Y
        lam = self.reg * len(codes) if self.weighted else self.reg
        A[np.diag_indices_from(A)] += lam
        rhs = Y.T @ np.where(r > 0, c, 0.0)
        out = np.empty(self.rank + 2)
        out[: self.rank] = np.linalg.solve(A, rhs)
        out[self.rank :] = (self.mu, 1.0)  # implicit models have no biases
        return out

    def _explicit(self, codes: np.ndarray, r: np.ndarray) -> np.ndarray:
        k = self.rank
        F = np.empty((len(codes), k + 1))
        F[:, :k] = self.V[codes]
        F[:, k] = 1.0
        t = r - self.mu - self.bi[codes]
        w = len(codes) if self.weighted else 1
        A = F.T @ F
        A[np.arange(k), np.arange(k)] += self.reg * w
        A[k, k] += self.reg_bias * w
        z = np.linalg.solve(A, F.T @ t)
        out = np.empty(k + 2)
        out[:k] = z[:k]
        out[k] = self.mu + z[k]
        out[k + 1] = 1.0
        return out

    def fold(self, histories: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Augmented user vectors (float32) of the users with these full histories."""
        for _, w in histories:
            self._check(np.asarray(w, dtype=np.float32))
        if self.solve is not None:
            out = [
                self.solve(c, np.asarray(w, np.float32).astype(np.float64)) for c, w in histories
            ]
            return np.asarray(out, dtype=np.float32).reshape(len(histories), self.rank + 2)
        return self._through_model(histories)

    def _through_model(self, histories: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """``model.fold_in`` under stand-in ids the model does not have (results dropped)."""
        n = len(histories)
        if isinstance(self.probe, str):
            ids: Any = np.array([f"{self.probe}{j}" for j in range(n)], dtype=object)
        else:
            ids = np.arange(n, dtype=np.int64) + self.probe
        items = self.model.items_.to_numpy()
        frame = pd.DataFrame(
            {
                "user": np.repeat(ids, [len(c) for c, _ in histories]),
                "item": items[np.concatenate([c for c, _ in histories])],
                "rating": np.concatenate([w for _, w in histories]).astype(np.float64),
            }
        )
        folded = self.model.fold_in(frame)
        rows = folded.users_.get_indexer(pd.Index(ids))
        out = np.empty((n, self.rank + 2), np.float32)
        if self.rank:
            out[:, : self.rank] = folded.user_factors_[rows]
        out[:, self.rank] = self.mu + np.asarray(folded.user_bias_)[rows]
        out[:, self.rank + 1] = 1.0
        return out
