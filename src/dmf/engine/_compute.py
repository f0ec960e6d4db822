"""Where dmf's task graphs run: the active ``distributed.Client`` if any, else Dask's default.

dmf never starts a cluster by itself. With no client, graphs run on Dask's
threaded scheduler in this process; a client that is already active is used
as is (Dask picks it up through ``dask.compute``/``dask.persist``). Small fits
with no client skip the graphs: :func:`in_process` says when, and
:func:`thread_map` runs their per-block functions on threads here.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dask
from dask.base import tokenize

__all__ = [
    "INPROCESS_NNZ",
    "active_client",
    "in_process",
    "key",
    "local_values",
    "n_threads",
    "persist",
    "reduce_local",
    "run_lanes",
    "thread_map",
    "tree_reduce",
    "wait",
]

#: Fits of at most this many ratings, with no distributed Client active, call their
#: per-block functions on a pool of threads in this process (:func:`thread_map`)
#: instead of building task graphs: the same functions on the same blocks, hence the
#: same results, without Dask's cost per graph and per task (a few milliseconds per
#: half-sweep or epoch, more than the work itself on MovieLens 100K). Dask config
#: ``dmf.in-process: False`` turns this off (graphs always; a local ``report=`` does).
INPROCESS_NNZ = 2_000_000


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


def in_process(nnz: int) -> bool:
    """True when work on ``nnz`` ratings runs in-process (:data:`INPROCESS_NNZ`, no Client)."""
    if not dask.config.get("dmf.in-process", True) or nnz > INPROCESS_NNZ:
        return False
    if dask.config.get("scheduler", None) in ("processes", "multiprocessing"):
        return False  # asked for explicitly: give it the graphs
    return active_client() is None


def local_values(objs: Any, kind: type) -> list[Any]:
    """The values of Dask objects, for in-process work: each ``kind`` value the graph
    already holds (a block persisted in this process) is taken as it is, the rest
    computed. ``dask.compute`` of four persisted blocks costs about 2 ms.
    """
    objs = list(objs)
    out = [getattr(o, "dask", {}).get(getattr(o, "key", None)) for o in objs]
    todo = [n for n, v in enumerate(out) if not isinstance(v, kind)]
    for n, v in zip(todo, dask.compute(*[objs[n] for n in todo]), strict=True):
        out[n] = v
    return out


_SERIAL = ("sync", "synchronous", "single-threaded")
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(n: int) -> ThreadPoolExecutor:
    """A pool of ``n`` threads, made once per process (a thread start costs milliseconds)."""
    with _POOLS_LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(n, thread_name_prefix="dmf-block")
        return _POOLS[n]


def thread_map(func: Callable[[Any], Any], items: Any) -> list[Any]:
    """``[func(x) for x in items]`` on up to :func:`n_threads` threads, the caller's included.

    For nogil kernels over whole blocks. Threads take the next item as they
    finish one; every call has ended when this returns or raises. Under Dask's
    synchronous scheduler (``dask.config.set(scheduler="sync")``) every call
    runs in the caller's thread.
    """
    items = list(items)
    helpers = min(len(items), n_threads()) - 1
    if dask.config.get("scheduler", None) in _SERIAL:
        helpers = 0  # Dask's synchronous scheduler asked for: one thread, for debugging
    if helpers <= 0:
        return [func(x) for x in items]
    out: list[Any] = [None] * len(items)
    claim = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        for j in iter(claim.__next__, None):
            if j >= len(items):
                return
            out[j] = func(items[j])

    futures = [_pool(helpers).submit(work) for _ in range(helpers)]
    try:
        work()
    finally:
        errors = [f.exception() for f in futures]  # waits for every helper
    for e in errors:
        if e is not None:
            raise e
    return out


_LANES: dict[int, ThreadPoolExecutor] = {}
_LANES_LOCK = threading.Lock()


def run_lanes(func: Callable[[int, int], Any], n: int) -> list[Any]:
    """``[func(lane, m) for lane in range(m)]``, all ``m`` calls running at once.

    For nogil kernels whose lanes wait for one another (a spin barrier), which
    a pool that may run the calls one after the other would deadlock. ``m`` is
    ``n``, or 1 under Dask's synchronous scheduler; the caller runs lane 0 and
    a pool kept for lanes runs the others (one group of lanes at a time in the
    process: a thread start costs milliseconds). If a lane can raise before
    reaching its barrier, ``func`` must release the other lanes itself.
    """
    m = 1 if dask.config.get("scheduler", None) in _SERIAL else max(1, int(n))
    if m == 1:
        return [func(0, 1)]
    with _LANES_LOCK:
        if m - 1 not in _LANES:
            _LANES[m - 1] = ThreadPoolExecutor(m - 1, thread_name_prefix="dmf-lane")
        futures = [_LANES[m - 1].submit(func, lane, m) for lane in range(1, m)]
        try:
            first = func(0, m)
        finally:
            errors = [f.exception() for f in futures]  # waits for every lane
        for e in errors:
            if e is not None:
                raise e
        return [first, *(f.result() for f in futures)]


def reduce_local(func: Any, parts: list[Any], fan_in: int = 8) -> Any:
    """:func:`tree_reduce` on values, in the same grouping (hence the same sums)."""
    if not parts:
        raise ValueError("reduce_local needs at least one part")
    while len(parts) > 1:
        parts = [func(*parts[j : j + fan_in]) for j in range(0, len(parts), fan_in)]
    return parts[0]
