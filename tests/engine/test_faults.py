"""Fault tolerance of the solvers on a real cluster.

- A worker of the 2-process ``LocalCluster`` is SIGKILLed mid-fit (right after
  an iteration is recorded, while the next one's inputs live on that worker):
  Dask recomputes the lost blocks and the fit ends with the same factors as an
  undisturbed run on the same cluster (ALS to 1e-5, SGD bit-identical).
- The cluster disappears mid-fit: the fit raises :class:`dmf.ClusterError`
  naming how far it got (not a ``distributed`` traceback); with ``checkpoint=``
  the fit resumes (here on local threads) to the same factors as an undisturbed
  fit.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import dask
import numpy as np
import pytest

import dmf
from dmf.testing import random_frame

pytestmark = pytest.mark.timeout(600)

PARAMS: dict[str, dict[str, Any]] = {
    "als": {"rank": 8, "max_iter": 4, "seed": 0},
    "sgd": {"rank": 8, "max_iter": 4, "grid": 2, "seed": 0},
}


@pytest.fixture(scope="module")
def ratings() -> Any:
    with dask.config.set(scheduler="threads"):
        return dmf.from_pandas(random_frame(500, 300, 0.12, seed=3))


def _fit(method: str, ratings: Any, on_iteration: Any = None, **fit_kw: Any) -> Any:
    """Fit with a hook called after each recorded iteration (``on_iteration(n)``)."""
    if method not in dmf.METHODS:
        pytest.skip(f"method={method!r} has not landed")
    est = dmf.METHODS[method](**PARAMS[method])
    if on_iteration is not None:
        record = est._record

        def hooked(*args: Any, **kwargs: Any) -> None:
            record(*args, **kwargs)
            on_iteration(len(est.history_))

        est._record = hooked  # instance attribute: only this fit is hooked
    return est.fit(ratings, **fit_kw)


def _assert_same(method: str, got: Any, ref: Any) -> None:
    pairs = [
        (got.user_factors_, ref.user_factors_),
        (got.item_factors_, ref.item_factors_),
        (got.user_bias_, ref.user_bias_),
        (got.item_bias_, ref.item_bias_),
    ]
    for a, b in pairs:
        if method == "sgd":
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _kill_one_worker(client: Any) -> int:
    """SIGKILL one worker process (its nanny starts a fresh one); returns the pid."""
    pids = client.run(os.getpid)
    # The worker holding the most keys: the one whose loss hurts.
    held = client.run(lambda dask_worker: len(dask_worker.data))
    addr = max(sorted(pids), key=lambda a: held.get(a, 0))
    os.kill(pids[addr], signal.SIGKILL)
    return pids[addr]


@pytest.mark.parametrize("method", ["als", "sgd"])
def test_killed_worker_mid_fit_same_result(method: str, ratings: Any, client: Any) -> None:
    with client.as_current():
        ref = _fit(method, ratings)
        killed: list[int] = []

        def kill(n: int) -> None:
            if n == 1 and not killed:
                killed.append(_kill_one_worker(client))

        try:
            got = _fit(method, ratings, on_iteration=kill)
        finally:
            client.wait_for_workers(2, timeout=600)
    assert killed, "no worker was killed"
    assert len(got.history_) == len(ref.history_)
    _assert_same(method, got, ref)


@pytest.mark.parametrize("method", ["als", "sgd"])
def test_lost_cluster_is_a_clear_error_and_resumable(
    method: str, ratings: Any, tmp_path: Any
) -> None:
    from distributed import Client, LocalCluster

    ckpt = str(tmp_path / f"{method}-ckpt.zarr")
    with dask.config.set(scheduler="threads"):
        ref = _fit(method, ratings)

    # In-process workers share this process's compiled kernels: no JIT in new processes.
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
    )
    client = Client(cluster, set_as_default=False)

    def close_cluster(n: int) -> None:
        if n == 2:
            cluster.close()

    try:
        with (
            dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
            client.as_current(),
            pytest.raises(dmf.ClusterError) as info,
        ):
            _fit(method, ratings, on_iteration=close_cluster, checkpoint=ckpt)
    finally:
        client.close()
        cluster.close()
    msg = str(info.value)
    assert "lost its Dask cluster after 2 completed iteration(s)" in msg, msg
    assert "resume=True" in msg and ckpt in msg, msg
    assert isinstance(info.value.__cause__, Exception)

    with dask.config.set(scheduler="threads"):
        resumed = _fit(method, ratings, checkpoint=ckpt, resume=True)
    _assert_same(method, resumed, ref)


def test_cluster_error_only_for_lost_clusters() -> None:
    from dmf.engine._faults import cluster_error

    assert cluster_error(ValueError("x"), "ALS.fit", 1, None) is None
    assert cluster_error(dmf.ParameterError("x"), "ALS.fit", 1, None) is None
    from distributed.comm.core import CommClosedError

    err = cluster_error(CommClosedError("in <TCP (closed)>"), "ALS.fit", 3, None)
    assert isinstance(err, dmf.ClusterError)
    assert "after 3 completed iteration(s)" in str(err)
    assert "pass checkpoint=" in str(err)
