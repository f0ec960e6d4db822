"""What the DSGD models (:class:`dmf.SGD`, :class:`dmf.BPR`) share.

Their common hyper-parameters, typed and checked; the grid side and seed a
fit settles before its fingerprint; the fingerprint itself (the parameters
that change the result: not the iteration count, verbosity, grid or seed,
which the fingerprint names apart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dmf._errors import check_choice, check_float, check_int, check_param
from dmf.data._ratings import Ratings
from dmf.models._recommender import Recommender
from dmf.models._training import Config, Iterative
from dmf.models.sgd._grid import grid_and_seed

__all__ = ["PAD", "DSGDConfig", "DSGDModel"]

#: Internal factor rows are padded to a multiple of this many columns (kept exactly 0):
#: aligned rows with no remainder loop, and one compiled kernel for every rank up to 16.
PAD = 16


@dataclass(frozen=True)
class DSGDConfig(Config):
    """The hyper-parameters every DSGD model has, checked and typed."""

    rank: int
    max_iter: int
    lr: float
    reg: float
    reg_bias: float
    biases: bool
    init_scale: float
    dtype: str

    @property
    def kpad(self) -> int:
        """The internal rank: ``rank`` padded to a multiple of :data:`PAD`."""
        return -(-self.rank // PAD) * PAD


class DSGDModel(Iterative, Recommender):
    """Base of the DSGD estimators: shared checks, preparation and fingerprint."""

    #: The model's typed configuration, made by ``_prepare`` as ``self._cfg``.
    _config: type[DSGDConfig] = DSGDConfig
    #: Parameters that do not change the result of an iteration (left out of the fingerprint).
    _unfingerprinted: tuple[str, ...] = ("max_iter", "verbose", "grid", "seed")
    #: True/False parameters.
    _flags: tuple[str, ...] = ("biases", "verbose")

    def _validate_params(self) -> None:
        check_int("rank", self.rank, 1)
        check_int("max_iter", self.max_iter, 1)
        check_float("lr", self.lr, 0.0, strict=True)
        check_float("reg", self.reg, 0.0)
        check_float("reg_bias", self.reg_bias, 0.0)
        for name in self._flags:
            value = getattr(self, name)
            check_param(name, value, isinstance(value, bool), "True or False")
        check_float("init_scale", self.init_scale, 0.0, strict=True)
        if self.grid is not None:
            check_int("grid", self.grid, 1)
        if self.seed is not None:
            check_int("seed", self.seed, 0, 2**63 - 1)
        check_choice("dtype", self.dtype, ("float32", "float64"))

    def _prepare(self, ratings: Ratings, saved: dict[str, Any] | None) -> None:
        self._grid_seed = grid_and_seed(self.grid, self.seed, saved, ratings)
        self._cfg = self._config.of(self)

    def _fingerprint(self) -> dict[str, Any]:
        params = self.get_params()
        for name in self._unfingerprinted:
            params.pop(name)
        d, seed = self._grid_seed
        return {"params": params, "grid": d, "seed": seed, "train": self.train_info_}
