"""What an SGD fit carries from epoch to epoch: learning-rate schedules, best epoch, stops.

``"constant"`` keeps the rate, ``"decay"`` divides it by ``1 + lr_decay * t``
in epoch ``t``, and the bold driver grows it by :data:`BOLD_GROW` after an
epoch whose loss fell and, after one whose loss rose (or was not finite),
throws the epoch away and halves the rate. :class:`_Run` holds the current
and best factors and goes into checkpoints (:meth:`_Run.state`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dmf._errors import ConvergenceError

__all__ = ["BOLD_GROW", "BOLD_SHRINK", "LR_SCHEDULES", "ROUND"]

#: Learning-rate schedules.
LR_SCHEDULES = ("constant", "decay", "bold-driver")
#: Bold driver: factor applied to ``lr`` after an epoch whose loss fell / rose.
BOLD_GROW = 1.05
BOLD_SHRINK = 0.5
#: Most epochs chained into one round (one Dask call) when no epoch needs a decision.
ROUND = 8


def round_length(
    epoch: int, max_iter: int, schedule: str, decisions: bool, checkpoint_every: int | None
) -> int:
    """How many epochs to chain from ``epoch`` (1 when each needs a decision of its own).

    ``decisions``: every epoch is validated; ``checkpoint_every``: a round ends
    on every checkpoint (``None``: no checkpoints).
    """
    if decisions or schedule == "bold-driver":
        return 1
    n = min(ROUND, max_iter - epoch)
    if checkpoint_every is not None:
        n = min(n, checkpoint_every - epoch % checkpoint_every)
    return max(1, n)


def epoch_lr(schedule: str, lr0: float, decay: float, epoch: int, current: float) -> float:
    """The rate of ``epoch`` (``current``: the run's rate, kept by the bold driver)."""
    if schedule == "decay":
        return lr0 / (1.0 + decay * epoch)
    return current


_NAMES = ("P", "Q", "bu", "bi")


class _Run:
    """What a fit carries from epoch to epoch (and through a checkpoint)."""

    def __init__(self, current: tuple[np.ndarray, ...], lr: float) -> None:
        self.start = 0
        self.current: tuple[np.ndarray, ...] | None = current
        self.lr = lr
        self.prev_loss: float | None = None
        self.accepted = False
        self.stopped = False
        self.best: dict[str, Any] = {"epoch": 0, "rmse": None, "since": 0}
        self.best_arrays: tuple[np.ndarray, ...] | None = None

    @classmethod
    def from_checkpoint(
        cls, start: int, arrays: dict[str, np.ndarray], state: dict[str, Any], kpad: int
    ) -> _Run:
        current = (_pad(arrays["P"], kpad), _pad(arrays["Q"], kpad), arrays["bu"], arrays["bi"])
        run = cls(current, float(state["lr"]))
        run.start = int(start)
        run.prev_loss = state["prev_loss"]
        run.accepted = bool(state["accepted"])
        run.stopped = bool(state["stopped"])
        run.best = dict(state["best"])
        if "best_P" in arrays:
            run.best_arrays = (
                _pad(arrays["best_P"], kpad),
                _pad(arrays["best_Q"], kpad),
                arrays["best_bu"],
                arrays["best_bi"],
            )
        if run.stopped:
            run.start = 1 << 62  # early stopping had ended the fit
        return run

    def state(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "prev_loss": self.prev_loss,
            "accepted": self.accepted,
            "stopped": self.stopped,
            "best": self.best,
        }

    def accept(self, loss: float, state: tuple[np.ndarray, ...] | None) -> None:
        self.prev_loss = loss
        self.accepted = True
        if state is not None:  # None mid-round: the round's last epoch brings the state
            self.current = state

    def score(self, epoch: int, rmse: float, patience: int | None) -> None:
        if self.best["rmse"] is None or rmse < self.best["rmse"]:
            self.best = {"epoch": epoch, "rmse": rmse, "since": 0}
            self.best_arrays = self.current
        else:
            self.best["since"] += 1
        if patience is not None and self.best["since"] >= int(patience):
            self.stopped = True

    def step(
        self,
        schedule: str,
        epoch: int,
        lr: float,
        losses: tuple[float, float],
        nnz: int,
        state: tuple[np.ndarray, ...] | None,
    ) -> dict[str, Any]:
        """Take epoch ``epoch``'s result (``state``: None mid-round); its history entry.

        Raises :class:`dmf.ConvergenceError` on a non-finite loss, except under
        the bold driver, which throws the epoch away and halves the rate.
        """
        sse, pen = losses
        loss = (sse + pen) / nnz
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(loss),
            "train_rmse": math.sqrt(sse / nnz) if math.isfinite(sse) else math.nan,
            "lr": lr,
        }
        if schedule == "bold-driver":
            entry["restored"] = False
        rose = self.prev_loss is not None and loss > self.prev_loss
        if not math.isfinite(loss) and schedule != "bold-driver":
            raise ConvergenceError(
                f"SGD diverged in epoch {epoch + 1}: the training loss is {loss} "
                f"with lr={lr:g}; use a smaller lr (e.g. lr={lr / 10:g})"
            )
        if schedule == "bold-driver" and (not math.isfinite(loss) or rose):
            # Throw the epoch away (keep the previous states) and halve the rate.
            entry["restored"] = True
            self.lr = lr * BOLD_SHRINK
        else:
            # (mid-round epochs are accepted, then the round's last one sets the state)
            self.accept(float(loss), state)
            if schedule == "bold-driver":
                self.lr = lr * BOLD_GROW
        return entry


def _pad(a: np.ndarray, kpad: int) -> np.ndarray:
    out = np.zeros((a.shape[0], kpad), dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


def _last_accepted(history: list[dict[str, Any]]) -> int:
    for h in reversed(history):
        if not h.get("restored"):
            return int(h["epoch"])
    return 0
