"""Where dmf's task graphs run: the active ``distributed.Client`` if any, else Dask's default.

dmf never starts a cluster by itself. With no client, graphs run on Dask's
threaded scheduler in this process; a client that is already active is used
as is (Dask picks it up through ``dask.compute``/``dask.persist``).
"""

from __future__ import annotations

import os
from typing import Any

import dask
from dask.base import tokenize

__all__ = ["active_client", "key", "n_threads", "persist", "tree_reduce", "wait"]


def active_client() -> Any | None:
    """The active ``distributed.Client``, or ``None`` when graphs run locally."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return Client.current(allow_global=True)
    except ValueError:
        return None


def n_threads() -> int:
    """How many tasks can run at once: the client's threads, else Dask's local pool."""
    client = active_client()
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # pragma: no cover - a client that cannot answer
            return 1
    configured = dask.config.get("num_workers", None)
    return int(configured or os.cpu_count() or 1)


def key(prefix: str, *parts: Any) -> str:
    """A task key whose prefix names the work on the dashboard (``als-solve-users-<token>``)."""
    return f"{prefix}-{tokenize(*parts)}"


def persist(*objs: Any) -> tuple[Any, ...]:
    """Persist Dask collections and wait until they are in memory."""
    out = dask.persist(*objs)
    wait(out)
    return out


def wait(objs: Any) -> None:
    """Block until persisted collections are ready (a no-op without a client)."""
    client = active_client()
    if client is not None:
        from distributed import futures_of
        from distributed import wait as dwait

        futures = futures_of(objs)
        if futures:
            dwait(futures)


def tree_reduce(func: Any, parts: list[Any], prefix: str, fan_in: int = 8) -> Any:
    """Combine lazy per-block partials with ``func(*parts)`` in a tree of tasks.

    ``func`` takes up to ``fan_in`` partials and returns one of the same kind
    (e.g. sums and counts), so the reduction is a few small tasks deep rather
    than one task holding every partial.
    """
    if not parts:
        raise ValueError("tree_reduce needs at least one part")
    while len(parts) > 1:
        parts = [
            dask.delayed(func)(
                *parts[j : j + fan_in],
                dask_key_name=key(prefix, [getattr(p, "key", p) for p in parts[j : j + fan_in]]),
            )
            for j in range(0, len(parts), fan_in)
        ]
    return parts[0]
