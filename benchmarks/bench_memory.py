"""Memory ceilings: ALS and SGD fits on the ML-20M shape (20M ratings), peak RSS.

The target is a peak RSS under 6 GB for each fit (the whole benchmark process:
reading the Parquet file, building the Ratings and fitting). Skipped under
``--quick``; ``python tools/bench/memory_ceiling.py`` measures the same in
separate processes and prints a table.
"""

from __future__ import annotations

from .common import check_shape, estimator, files, warm_up


class MemoryCeiling:
    params = ["als", "sgd"]
    param_names = ["method"]
    timeout = 3600

    def setup(self, method: str) -> None:
        import dmf

        check_shape("ml20m")
        estimator(method)
        warm_up(method)
        self.train = dmf.read_parquet(str(files("ml20m")[0]))

    def peakmem_fit_ml20m(self, method: str) -> None:
        estimator(method, max_iter=2).fit(self.train)
