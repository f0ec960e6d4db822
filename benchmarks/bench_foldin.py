"""Fold-in: new users' factors solved against fixed item factors, without a refit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .common import PARAMS, fitted_models


def _new_users(model: Any, n_users: int, per_user: int, seed: int = 0) -> pd.DataFrame:
    """``n_users`` brand-new users with ``per_user`` ratings each of known items."""
    rng = np.random.default_rng(seed)
    items = np.asarray(model.items_)
    first = int(np.max(np.asarray(model.users_))) + 1  # new ids of the model's id type
    rows = []
    for j in range(n_users):
        chosen = rng.choice(len(items), size=min(per_user, len(items)), replace=False)
        rows.append(
            pd.DataFrame(
                {
                    "user": first + j,
                    "item": items[chosen],
                    "rating": (rng.integers(2, 11, len(chosen)) / 2).astype(np.float32),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


class FoldIn:
    params = PARAMS
    param_names = ["shape"]
    timeout = 600

    setup_cache = staticmethod(fitted_models)

    def setup(self, models: dict[str, Any], shape: str) -> None:
        if shape not in models:
            raise NotImplementedError(f"shape {shape!r} skipped")
        self.model = models[shape]
        if not hasattr(self.model, "fold_in"):
            raise NotImplementedError("fold_in is not available in this version")
        self.one = _new_users(self.model, 1, 50)
        self.hundred = _new_users(self.model, 100, 50, seed=1)
        self.model.fold_in(self.one)  # compile/warm the fold-in kernel

    def time_fold_in_one_user(self, models: dict[str, Any], shape: str) -> None:
        self.model.fold_in(self.one)

    def time_fold_in_100_users(self, models: dict[str, Any], shape: str) -> None:
        self.model.fold_in(self.hundred)
