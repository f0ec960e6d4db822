"""Model fits: baseline, ALS and SGD, timed over a few iterations, with RMSE tracked.

``time_fit`` is a fit of ``ITERATIONS`` iterations (sweeps/epochs) after the
kernels were compiled on tiny data; ``track_seconds_per_iteration`` is the median
of the per-iteration times the model records in ``history``; ``track_rmse`` the
test RMSE of that fit (ratings predicted on the held-out 20%).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import PARAMS, check_shape, estimator, ratings, warm_up


class _Fit:
    method = "baseline"
    params = PARAMS
    param_names = ["shape"]
    timeout = 1800

    def setup(self, shape: str) -> None:
        check_shape(shape)
        estimator(self.method)  # NotImplementedError if the method has not landed
        warm_up(self.method)
        self.train, self.test = ratings(shape)

    def time_fit(self, shape: str) -> None:
        estimator(self.method).fit(self.train)

    def peakmem_fit(self, shape: str) -> None:
        estimator(self.method).fit(self.train)


class _Track:
    """RMSE and seconds per iteration of one fit per shape (fitted once, in setup_cache)."""

    method = "baseline"
    params = PARAMS
    param_names = ["shape"]
    timeout = 1800

    def _measure(self) -> dict[str, dict[str, float]]:
        import dmf

        out: dict[str, dict[str, float]] = {}
        try:
            estimator(self.method)
        except NotImplementedError:
            return out
        warm_up(self.method)
        for shape in PARAMS:
            try:
                check_shape(shape)
            except NotImplementedError:
                continue
            train, test = ratings(shape)
            model = estimator(self.method).fit(train)
            secs = [h.get("seconds", np.nan) for h in model.history_]
            out[shape] = {
                "rmse": float(dmf.evaluate(model, test, metrics=["rmse"])["rmse"]),
                "seconds": float(np.nanmedian(secs)) if secs else float("nan"),
            }
        return out

    def setup(self, cache: dict[str, Any], shape: str) -> None:
        if shape not in cache:
            raise NotImplementedError(f"{self.method} on {shape!r} skipped (quick or missing)")

    def track_rmse(self, cache: dict[str, Any], shape: str) -> float:
        return cache[shape]["rmse"]

    track_rmse.unit = "rmse"  # type: ignore[attr-defined]

    def track_seconds_per_iteration(self, cache: dict[str, Any], shape: str) -> float:
        return cache[shape]["seconds"]

    track_seconds_per_iteration.unit = "seconds"  # type: ignore[attr-defined]


class Baseline(_Fit):
    method = "baseline"


class BaselineTrack(_Track):
    method = "baseline"

    # One setup_cache per class (asv keys them by line): each fits its own method.
    def setup_cache(self) -> dict[str, dict[str, float]]:
        return self._measure()

    setup_cache.timeout = 3600  # type: ignore[attr-defined]


class ALS(_Fit):
    method = "als"


class ALSTrack(_Track):
    method = "als"

    # One setup_cache per class (asv keys them by line): each fits its own method.
    def setup_cache(self) -> dict[str, dict[str, float]]:
        return self._measure()

    setup_cache.timeout = 3600  # type: ignore[attr-defined]


class SGD(_Fit):
    method = "sgd"


class SGDTrack(_Track):
    method = "sgd"

    # One setup_cache per class (asv keys them by line): each fits its own method.
    def setup_cache(self) -> dict[str, dict[str, float]]:
        return self._measure()

    setup_cache.timeout = 3600  # type: ignore[attr-defined]
