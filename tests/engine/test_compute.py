"""dmf.engine._compute: where work runs (in-process thread pool or Dask graphs) and its helpers."""

from __future__ import annotations

import threading
import time

import dask
import numpy as np
import pytest

from dmf.engine._compute import (
    INPROCESS_NNZ,
    in_process,
    local_values,
    reduce_local,
    run_lanes,
    thread_map,
    tree_reduce,
)
from dmf.testing import random_ratings, scheduler


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


def test_run_lanes_runs_every_lane_at_once():
    # Every lane waits for all the others: this only returns if they all run together.
    for n in (1, 2, 3):
        meet = threading.Barrier(n, timeout=60)

        def lane(k: int, m: int, meet: threading.Barrier = meet) -> tuple[int, int, int]:
            meet.wait()
            return k, m, threading.get_ident()

        out = run_lanes(lane, n)
        assert [o[:2] for o in out] == [(k, n) for k in range(n)]
        assert out[0][2] == threading.get_ident()  # the caller is lane 0
        assert len({o[2] for o in out}) == n
    with dask.config.set(scheduler="sync"):
        assert run_lanes(lambda k, m: (k, m), 3) == [(0, 1)]


def test_run_lanes_raises_after_every_lane_ended():
    ended = []

    def lane(k: int, m: int) -> None:
        if k == 1:
            raise ValueError("lane 1 failed")
        time.sleep(0.05)
        ended.append(k)

    with pytest.raises(ValueError, match="lane 1 failed"):
        run_lanes(lane, 3)
    assert sorted(ended) == [0, 2]


def test_spin_barrier_waits_for_all_and_lets_go_on_give_up():
    from dmf.kernels._lanes import _barrier

    bar = np.zeros(3, dtype=np.int64)
    passed = []

    def lane(k: int, m: int) -> None:
        for r in range(50):
            passed.append(k)
            assert _barrier(bar, m)
            assert len(passed) >= (r + 1) * m  # every lane arrived before any left

    run_lanes(lane, 3)
    assert len(passed) == 150 and bar[0] == 0 and bar[1] == 50
    # A lane that gave up (bar[2] set) releases the ones waiting for it.
    bar[:] = 0
    out = []
    waiter = threading.Thread(target=lambda: out.append(_barrier(bar, 2)))
    waiter.start()
    time.sleep(0.05)
    bar[2] = 1
    waiter.join(timeout=60)
    assert out == [False]


def test_local_values_reads_persisted_values_and_computes_the_rest(monkeypatch):
    import dmf.engine._compute as compute
    from dmf.data._blocks import RowBlock

    ratings = random_ratings(n_users=20, n_items=10, seed=0)
    held = [b.dask[b.key] for b in ratings.blocks]
    assert all(isinstance(v, RowBlock) for v in held)  # persisted: the graph holds them
    lazy = dask.delayed(lambda: RowBlock.__name__)()
    asked = []
    real = dask.compute
    monkeypatch.setattr(compute.dask, "compute", lambda *a, **k: asked.append(a) or real(*a, **k))
    out = local_values([*ratings.blocks, lazy], RowBlock)
    assert asked == [(lazy,)]  # only the lazy one went through dask.compute
    assert all(a is b for a, b in zip(out[:-1], held, strict=True))
    assert out[-1] == "RowBlock"


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
