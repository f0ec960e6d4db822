"""Building Ratings: from a pandas frame and from a Parquet file."""

from __future__ import annotations

from .common import PARAMS, check_shape, files, frames, warm_up


class BuildRatings:
    """``dmf.from_pandas`` / ``dmf.read_parquet`` of the training ratings."""

    params = PARAMS
    param_names = ["shape"]
    timeout = 900

    def setup(self, shape: str) -> None:
        check_shape(shape)
        self.path = files(shape)[0]
        self.train = frames(shape)[0]
        warm_up()

    def time_from_pandas(self, shape: str) -> None:
        import dmf

        dmf.from_pandas(self.train)

    def peakmem_from_pandas(self, shape: str) -> None:
        import dmf

        dmf.from_pandas(self.train)

    def time_read_parquet(self, shape: str) -> None:
        import dmf

        dmf.read_parquet(str(self.path))
