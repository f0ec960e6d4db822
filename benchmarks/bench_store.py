"""Persistence: save a fitted model to Zarr and load it back."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from .common import PARAMS, fitted_models


class SaveLoad:
    params = PARAMS
    param_names = ["shape"]
    timeout = 600

    setup_cache = staticmethod(fitted_models)

    def setup(self, models: dict[str, Any], shape: str) -> None:
        import dmf

        if shape not in models:
            raise NotImplementedError(f"shape {shape!r} skipped")
        self.model = models[shape]
        if not (hasattr(self.model, "save") and hasattr(dmf, "load")):
            raise NotImplementedError("save/load are not available in this version")
        self.tmp = Path(tempfile.mkdtemp(prefix="dmf-bench-store-"))
        self.saved = self.tmp / "saved.zarr"
        self.model.save(str(self.saved))
        self.n = 0

    def teardown(self, models: dict[str, Any], shape: str) -> None:
        shutil.rmtree(getattr(self, "tmp", ""), ignore_errors=True)

    def time_save(self, models: dict[str, Any], shape: str) -> None:
        self.n += 1
        self.model.save(str(self.tmp / f"m{self.n}.zarr"))

    def time_load(self, models: dict[str, Any], shape: str) -> None:
        import dmf

        dmf.load(str(self.saved))
