"""Top-k recommendation: every user as a blocked graph, and one user on the serving path."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import PARAMS, fitted_models, ratings, warm_up


def _compute(obj: Any) -> Any:
    return obj.compute() if hasattr(obj, "compute") else obj


class RecommendAll:
    """``model.recommend_all(k=10, exclude=train)``, computed."""

    params = PARAMS
    param_names = ["shape"]
    timeout = 1800

    setup_cache = staticmethod(fitted_models)

    def setup(self, models: dict[str, Any], shape: str) -> None:
        if shape not in models:
            raise NotImplementedError(f"shape {shape!r} skipped")
        self.model = models[shape]
        if not hasattr(self.model, "recommend_all"):
            raise NotImplementedError("recommend_all is not available in this version")
        self.train, _ = ratings(shape)
        warm_up(serving=True)

    def time_recommend_all(self, models: dict[str, Any], shape: str) -> None:
        _compute(self.model.recommend_all(k=10, exclude=self.train))

    def peakmem_recommend_all(self, models: dict[str, Any], shape: str) -> None:
        _compute(self.model.recommend_all(k=10, exclude=self.train))


class RecommendOne:
    """``model.recommend(users=[u], k=10)`` for one known user: the serving path."""

    params = PARAMS
    param_names = ["shape"]
    timeout = 600

    setup_cache = staticmethod(fitted_models)

    def setup(self, models: dict[str, Any], shape: str) -> None:
        if shape not in models:
            raise NotImplementedError(f"shape {shape!r} skipped")
        self.model = models[shape]
        if not hasattr(self.model, "recommend"):
            raise NotImplementedError("recommend is not available in this version")
        users = self.model.users_
        self.users = [users[j] for j in np.random.default_rng(0).integers(0, len(users), 64)]
        self.n = 0
        self.model.recommend(users=[self.users[0]], k=10)  # first call pays any lazy set-up

    def time_recommend_one_user(self, models: dict[str, Any], shape: str) -> None:
        self.n += 1
        self.model.recommend(users=[self.users[self.n % len(self.users)]], k=10)
