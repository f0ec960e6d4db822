"""dmf._compute: where work runs (in-process thread pool or Dask graphs) and its helpers."""

from __future__ import annotations

import threading
import time

import dask
import numpy as np
import pytest

from dmf._compute import (
    INPROCESS_NNZ,
    in_process,
    reduce_local,
    thread_map,
    tree_reduce,
)
from dmf.testing import scheduler


def test_thread_map_keeps_order_and_uses_threads():
    seen: set[int] = set()

    def f(x: int) -> int:
        seen.add(threading.get_ident())
        return x * x

    assert thread_map(f, range(9)) == [x * x for x in range(9)]
    assert thread_map(f, []) == []
    with dask.config.set(num_workers=2):
        # Items 0 and 1 meet at a barrier: only two threads at once can get past it.
        meet = threading.Barrier(2, timeout=60)

        def g(x: int) -> int:
            if x < 2:
                meet.wait()
            return f(x)

        seen.clear()
        assert thread_map(g, range(6)) == [x * x for x in range(6)]
        assert len(seen) == 2
    for config in ({"num_workers": 1}, {"scheduler": "sync", "num_workers": 2}):
        with dask.config.set(config):
            seen.clear()
            thread_map(f, range(3))
            assert seen == {threading.get_ident()}  # all in the caller


def test_thread_map_raises_after_every_call_ended():
    done: list[int] = []

    def f(x: int) -> int:
        time.sleep(0.005)
        done.append(x)
        if x == 3:
            raise ValueError("bad item 3")
        return x

    with dask.config.set(num_workers=2), pytest.raises(ValueError, match="bad item 3"):
        thread_map(f, range(8))
    assert sorted(done) == list(range(8))  # nothing still running in the background


def test_reduce_local_groups_like_tree_reduce():
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=3).astype(np.float32) for _ in range(19)]

    def add(*xs):
        return sum(xs[1:], xs[0])

    lazy = tree_reduce(add, [dask.delayed(p) for p in parts], "sum", fan_in=4)
    np.testing.assert_array_equal(reduce_local(add, parts, fan_in=4), lazy.compute())
    with pytest.raises(ValueError, match="at least one"):
        reduce_local(add, [])


def test_in_process_only_for_small_data_without_client(client):
    assert in_process(INPROCESS_NNZ)
    assert not in_process(INPROCESS_NNZ + 1)
    for config in ({"dmf.in-process": False}, {"scheduler": "processes"}):
        with dask.config.set(config):
            assert not in_process(10)
    with scheduler("distributed", client):
        assert not in_process(10)
