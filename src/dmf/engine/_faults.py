"""A fit whose Dask cluster goes away ends in a :class:`dmf.ClusterError`, not a traceback.

Dask recomputes blocks lost with a killed worker by itself; what it cannot
survive is the scheduler or the client disappearing (or a task that keeps
killing workers). ``distributed`` then raises its own exceptions
(``ClosedClientError``, ``FuturesCancelledError``, ``CommClosedError``,
``KilledWorker``, connection timeouts) from deep inside the fit.
:func:`guard_fit` (applied by ``Recommender`` to every subclass's ``fit``)
turns those into one dmf error that says what happened, how far the fit got,
and how to resume from a checkpoint.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any

from dmf._errors import ClusterError, DMFError
from dmf.engine._compute import active_client

__all__ = ["cluster_error", "guard_fit"]


def _client_down() -> bool:
    """True when a client is current but no longer running (or none can answer)."""
    try:
        client = active_client()
    except Exception:  # pragma: no cover - a half-closed client
        return True
    if client is None:
        return False
    status = getattr(client, "status", "running")
    return str(status) not in ("running", "Status.running", "connecting")


def cluster_error(exc: BaseException, what: str, done: int, checkpoint: Any) -> DMFError | None:
    """The :class:`ClusterError` for ``exc`` when it means the cluster was lost, else None."""
    if isinstance(exc, DMFError):
        return None
    module = type(exc).__module__ or ""
    lost = module.startswith("distributed") or isinstance(
        exc, concurrent.futures.CancelledError | asyncio.CancelledError
    )
    if not lost and isinstance(exc, TimeoutError | OSError):
        lost = _client_down()
    if not lost:
        return None
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    if checkpoint is not None:
        hint = (
            f"fit again with checkpoint={checkpoint!r}, resume=True to continue from the "
            "newest checkpoint"
        )
    else:
        hint = "fit again (pass checkpoint= to make a long fit resumable)"
    return ClusterError(
        f"{what} lost its Dask cluster after {done} completed iteration(s): "
        f"{type(exc).__name__}: {first}. The scheduler or client went away (or a task kept "
        f"killing workers). Start a new Client (or none, for local threads) and {hint}."
    )


def guard_fit(fit: Callable[..., Any]) -> Callable[..., Any]:
    """``fit`` whose lost-cluster failures are raised as :class:`dmf.ClusterError`."""
    if getattr(fit, "_dmf_guarded", False):
        return fit

    @functools.wraps(fit)
    def guarded_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fit(self, *args, **kwargs)
        except Exception as exc:
            err = cluster_error(
                exc,
                f"{type(self).__name__}.fit",
                len(getattr(self, "history_", []) or []),
                kwargs.get("checkpoint"),
            )
            if err is None:
                raise
            raise err from exc

    guarded_fit._dmf_guarded = True  # type: ignore[attr-defined]
    guarded_fit._dmf_fit_session = getattr(fit, "_dmf_fit_session", False)  # type: ignore[attr-defined]
    return guarded_fit
