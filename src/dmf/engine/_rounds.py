"""Rounds of iterations computed as one Dask graph, rerun when a worker took their work.

A model whose iterations chain many small tasks (the DSGD strata) builds a
round of them as one graph from the client's copy of the round's start state
and gathers the end state. A worker lost mid-round then costs a rerun of the
round, rebuilt with fresh keys from the same start state (the same result),
instead of the fit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import warnings
from collections.abc import Callable
from typing import Any

import dask

from dmf._errors import DMFWarning
from dmf.engine._compute import active_client
from dmf.engine._faults import _client_down

__all__ = ["MAX_RETRIES", "run_graph"]

#: Reruns of a round whose work was lost with a worker (then the error propagates).
MAX_RETRIES = 3


def _work_lost(exc: BaseException) -> bool:
    """True when ``exc`` means results were lost with a worker while the client still runs."""
    if active_client() is None or _client_down():
        return False
    name = type(exc).__name__
    if isinstance(exc, concurrent.futures.CancelledError | asyncio.CancelledError):
        return True
    if name in ("KilledWorker", "CommClosedError", "FutureCancelledError"):
        return True
    return "lost dependencies" in str(exc)


def run_graph(build: Callable[[int], tuple[Any, ...]], what: str) -> tuple[Any, ...]:
    """``dask.compute(*build(attempt))``, rebuilt and rerun when work was lost with a worker.

    ``build`` makes the round's graph from the client's copy of its start
    state (``attempt`` goes into its keys), so a rerun is the same computation
    with fresh task keys and the result is bit-identical. ``what`` names the
    model in the warning a rerun gives.
    """
    for attempt in itertools.count():
        try:
            return dask.compute(*build(attempt))
        except Exception as exc:
            if attempt >= MAX_RETRIES or not _work_lost(exc):
                raise
            warnings.warn(
                f"{what}: a round of epochs lost its work ({type(exc).__name__}: "
                f"{(str(exc).splitlines() or [''])[0][:120]}); rerunning it from its start "
                f"state (retry {attempt + 1} of {MAX_RETRIES})",
                DMFWarning,
                stacklevel=4,
            )
    raise AssertionError("unreachable")  # pragma: no cover
