"""One block driver: a model states its per-block work once, the engine runs it.

With no ``distributed.Client`` and small data (:func:`in_process`) the blocks
are values in this process and the per-block functions run on threads at once;
otherwise each call is a task of a Dask graph, named after the work
(``als-solve-users-<token>``), and runs when the model computes or persists.
The functions, blocks and reduction trees are the same either way, so are the
results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import dask

from dmf.engine._compute import (
    in_process,
    key,
    local_values,
    persist,
    reduce_local,
    thread_map,
    tree_reduce,
)

__all__ = ["Engine"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _token(obj: Any) -> Any:
    """What names a task argument in a key: a Dask object's key, else the value."""
    return getattr(obj, "key", obj)


class Engine:
    """Runs per-block functions in-process (``local``) or as a Dask graph.

    Parameters
    ----------
    local : bool
        ``True``: values and threads in this process; ``False``: lazy tasks.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.engine import Engine
    >>> blocks = [np.arange(3.0), np.arange(3.0, 6.0)]
    >>> for eng in (Engine(local=True), Engine(local=False)):
    ...     parts = eng.map("sum-block", lambda b, s: float(b.sum()) * s, blocks, shared=(2.0,))
    ...     print(eng.compute(eng.reduce("sum-reduce", lambda *p: sum(p), parts))[0])
    30.0
    30.0
    """

    def __init__(self, local: bool) -> None:
        self.local = bool(local)

    @classmethod
    def for_work(cls, nnz: int) -> Engine:
        """The engine for work on ``nnz`` ratings (see :func:`dmf.engine._compute.in_process`)."""
        return cls(in_process(int(nnz)))

    def __repr__(self) -> str:
        return f"Engine(local={self.local})"

    def values(self, objs: Sequence[Any], kind: type) -> list[Any]:
        """Blocks for :meth:`map`: their values when local (``kind`` instances), else as is."""
        return local_values(objs, kind) if self.local else list(objs)

    def share(self, value: Any) -> Any:
        """A value every block task reads: one graph key for all of them (as is when local)."""
        return value if self.local else dask.delayed(value, pure=True)

    def map(
        self,
        prefix: str,
        func: Callable[..., Any],
        *per_block: Sequence[Any],
        shared: tuple[Any, ...] = (),
        token: Any = (),
    ) -> list[Any]:
        """``func(seq1[j], seq2[j], ..., *shared)`` for every block ``j``.

        Local: run on threads now, the results returned. Graph: one lazy task
        per block, keyed ``prefix-<token>`` from its arguments' keys and
        ``token`` (e.g. the iteration), so the dashboard names the work.
        """
        if not per_block:
            raise ValueError("Engine.map needs at least one per-block sequence")
        n = len(per_block[0])
        if any(len(s) != n for s in per_block):
            raise ValueError(f"Engine.map: per-block sequences differ in length ({prefix})")
        if self.local:
            return thread_map(lambda j: func(*(s[j] for s in per_block), *shared), range(n))
        shared_token = [_token(a) for a in shared]
        out = []
        for j in range(n):
            args = [s[j] for s in per_block]
            name = key(prefix, [_token(a) for a in args], shared_token, token, j)
            out.append(dask.delayed(func)(*args, *shared, dask_key_name=name))
        return out

    def reduce(
        self, prefix: str, func: Callable[..., Any], parts: list[Any], fan_in: int = 8
    ) -> Any:
        """Partials combined by ``func(*parts[:fan_in])`` in a tree, the same grouping both ways."""
        if self.local:
            return reduce_local(func, parts, fan_in)
        return tree_reduce(func, parts, prefix, fan_in)

    def compute(self, *objs: Any) -> tuple[Any, ...]:
        """The values of results of :meth:`map` / :meth:`reduce` (nested lists allowed)."""
        return objs if self.local else dask.compute(*objs)

    def pick(self, local: _F, graph: _F) -> _F:
        """Of two strategies for the same work, the one this engine runs.

        For work a model runs better in-process as something other than
        :meth:`map` calls (e.g. DSGD's lanes: one nogil call per thread for a
        whole round of epochs) beside its graph form; both must give the same
        result. The graph form may use :func:`dmf.engine._rounds.run_graph`.
        """
        return local if self.local else graph

    def persist(self, *objs: Any) -> tuple[Any, ...]:
        """Results kept for the next steps: values when local, persisted tasks otherwise."""
        if self.local:
            return dask.compute(*objs)  # values stay values; lazy inputs are computed once
        return persist(*objs)
