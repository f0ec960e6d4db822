"""Evaluation: rmse/mae and the ranking metrics at k=10, as blocked graphs."""

from __future__ import annotations

import inspect
from typing import Any

from .common import PARAMS, fitted_models, ratings, warm_up

RANKING = ["precision@10", "recall@10", "ndcg@10", "map@10"]


class Evaluate:
    params = PARAMS
    param_names = ["shape"]
    timeout = 1800

    setup_cache = staticmethod(fitted_models)

    def setup(self, models: dict[str, Any], shape: str) -> None:
        if shape not in models:
            raise NotImplementedError(f"shape {shape!r} skipped")
        self.model = models[shape]
        self.train, self.test = ratings(shape)
        warm_up(serving=True)

    def time_rmse_mae(self, models: dict[str, Any], shape: str) -> None:
        import dmf

        dmf.evaluate(self.model, self.test, metrics=["rmse", "mae"])

    def _ranking(self) -> None:
        import dmf

        if "train" not in inspect.signature(dmf.evaluate).parameters:
            raise NotImplementedError("ranking metrics are not available in this version")
        dmf.evaluate(self.model, self.test, train=self.train, metrics=RANKING)

    def time_ranking_at_10(self, models: dict[str, Any], shape: str) -> None:
        self._ranking()

    def peakmem_ranking_at_10(self, models: dict[str, Any], shape: str) -> None:
        self._ranking()
