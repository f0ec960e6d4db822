"""Fold-in of users' histories against the fixed item side, with the model's own user step.

The server solves one user per event with :func:`dmf.serving.user_step`, the
solve ``model.fold_in`` uses (so the two agree by construction), on a CSR built
from the histories: no DataFrame, no id lookup, and the implicit Gram ``YᵀY``
cached on the model rather than rebuilt per call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import dmf
from dmf.data._blocks import CSR
from dmf.serving import user_step

__all__ = ["Folder"]


class Folder:
    """Solves augmented user vectors ``[x_u, μ + b_u, 1]`` from ``(item codes, weights)``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.mu = float(model.global_mean_)
        V = getattr(model, "item_factors_", None)
        self.rank = 0 if V is None else V.shape[1]
        self.n_items = len(model.items_)
        self.step = user_step(model)
        lo, hi = (float(v) for v in model.rating_scale_)
        self.scale = (lo, hi)
        # an implicit model's weights are confidences (counts): any value >= 0, as in its fit
        self.implicit = bool(getattr(model, "implicit", False) or model.train_info_.get("implicit"))

    def _check(self, weights: np.ndarray) -> None:
        if self.implicit:
            bad = ~(weights >= 0)
            if bad.any():
                raise dmf.RatingsError(
                    f"{int(bad.sum())} negative weight(s) for an implicit-feedback model "
                    f"(first: {', '.join(map(str, weights[bad][:5].tolist()))})"
                )
            return
        lo, hi = self.scale
        if np.isfinite(lo) and np.isfinite(hi):
            out = (weights < lo) | (weights > hi)
            if out.any():
                raise dmf.RatingsError(
                    f"{int(out.sum())} weight(s) outside the model's scale [{lo}, {hi}] "
                    f"(first: {', '.join(map(str, weights[out][:5].tolist()))})"
                )

    def fold(self, histories: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Augmented user vectors (float32) of the users with these full histories."""
        rows = []
        for c, w in histories:  # CSR rows hold their item codes sorted
            c = np.asarray(c, np.int32)
            order = np.argsort(c, kind="stable")
            rows.append((c[order], np.asarray(w, dtype=np.float32)[order]))
        histories = rows
        weights = [w for _, w in histories]
        for w in weights:
            self._check(w)
        lengths = [len(c) for c, _ in histories]
        indptr = np.zeros(len(histories) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.concatenate([np.asarray(c, np.int32) for c, _ in histories] or [[]])
        data = np.concatenate(weights or [np.zeros(0, np.float32)])
        csr = CSR(0, len(histories), self.n_items, indptr, indices.astype(np.int32), data)
        factors, bias = self.step(csr)
        out = np.empty((len(histories), self.rank + 2), np.float32)
        if self.rank:
            out[:, : self.rank] = factors
        out[:, self.rank] = self.mu + np.asarray(bias, dtype=np.float64)
        out[:, self.rank + 1] = 1.0
        return out
