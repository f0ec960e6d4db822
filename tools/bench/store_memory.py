"""Client memory of building data, saving and loading a large model on a 2-worker cluster.

Synthetic ratings (default 1M users x 10K items x 10M ratings) are built on a
LocalCluster (2 worker processes, 1 thread each); a rank-64 model's factors are
Dask arrays persisted on the workers, one chunk per row block of the data (what
a fit on the cluster leaves), its biases and counts in the client. The script
samples this process's RSS every 5 ms and reports the growth over the level
before each step:

- ``synthetic``: ``dmf.datasets.synthetic`` on the cluster (and whether a
  "Sending large graph" warning was raised);
- ``save``: ``model.save`` (the workers write their blocks);
- ``load_recommend``: ``dmf.load`` (lazy by size) plus one single-user
  ``recommend``; then the warm single-user time.

A tiny model is saved and loaded first, so module imports are not counted.

Run (bounded: about 2 minutes at the default shape)::

    nice python tools/bench/store_memory.py --json docs/_data/store_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Any

import dask.array as da
import numpy as np
import psutil


class _Peak:
    """Peak RSS of this process while the block runs, sampled on a thread."""

    def __init__(self) -> None:
        self.proc = psutil.Process()

    @contextmanager
    def measure(self, out: dict[str, Any], name: str) -> Any:
        import gc

        gc.collect()
        base = self.proc.memory_info().rss
        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], self.proc.memory_info().rss)
                time.sleep(0.005)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            stop.set()
            t.join()
            peak[0] = max(peak[0], self.proc.memory_info().rss)
            out[name] = {
                "client_rss_growth_mb": round((peak[0] - base) / 2**20, 1),
                "seconds": round(time.perf_counter() - t0, 2),
            }


def _model(ratings: Any, rank: int, seed: int) -> Any:
    """An ALS model whose factors live on the workers, chunked by the data's row blocks."""
    import pandas as pd

    import dmf

    model = dmf.ALS(rank=rank)
    model._set_training_state(ratings)
    rng = np.random.default_rng(seed)
    model.user_bias_ = rng.normal(0, 0.1, ratings.n_users).astype(np.float32)
    model.item_bias_ = rng.normal(0, 0.1, ratings.n_items).astype(np.float32)
    rows = tuple(int(n) for n in np.diff(ratings.row_edges))
    state = da.random.RandomState(seed)
    model.user_factors_ = (
        state.standard_normal((ratings.n_users, rank), chunks=(rows, rank)).astype(np.float32) * 0.1
    ).persist()
    model.item_factors_ = (
        state.standard_normal((ratings.n_items, rank), chunks=(-1, rank)).astype(np.float32) * 0.1
    ).persist()
    model.n_iter_ = 0
    assert isinstance(model.users_, pd.Index)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--nnz", type=int, default=10_000_000)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from distributed import Client, LocalCluster, wait

    import dmf

    out: dict[str, Any] = {
        "shape": {"users": args.users, "items": args.items, "nnz": args.nnz, "rank": args.rank},
        "cluster": "LocalCluster, 2 worker processes x 1 thread",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "model": "ALS model with Dask-array factors persisted on the workers (built directly)",
    }
    peak = _Peak()
    tmp = tempfile.mkdtemp(prefix="dmf-store-memory-")
    # warm: the first save and load import zarr, xarray's backends and numcodecs
    import pandas as pd

    tiny = dmf.from_pandas(pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [3.0, 4.0]}))
    dmf.load(dmf.ALS(rank=2, max_iter=1).fit(tiny).save(os.path.join(tmp, "warm.zarr")))
    try:
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with peak.measure(out, "synthetic"):
                    ratings = dmf.datasets.synthetic(
                        n_users=args.users, n_items=args.items, nnz=args.nnz, seed=0
                    )
            out["synthetic"]["large_graph_warnings"] = sum(
                "large graph" in str(w.message) for w in caught
            )
            model = _model(ratings, args.rank, seed=0)
            wait([model.user_factors_, model.item_factors_])
            fbytes = model.user_factors_.nbytes + model.item_factors_.nbytes
            out["factor_mb"] = round(fbytes / 2**20, 1)
            path = os.path.join(tmp, "model.zarr")
            with peak.measure(out, "save"):
                model.save(path)
            del model
            client.run(lambda: __import__("gc").collect())
            user = [123_456 % args.users]
            with peak.measure(out, "load_recommend"):
                loaded = dmf.load(path)
                rec = loaded.recommend(users=user, k=10)
            out["load_recommend"]["lazy"] = isinstance(loaded.user_factors_, da.Array)
            assert len(rec) == 10
            t0 = time.perf_counter()
            for _ in range(20):
                loaded.recommend(users=user, k=10)
            out["warm_single_user_recommend_ms"] = round((time.perf_counter() - t0) / 20 * 1e3, 2)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/store_memory.json`` (tools/render_docs.py)."""
    syn, save, load = data["synthetic"], data["save"], data["load_recommend"]
    lines = [
        "| step | client RSS growth |",
        "|---|---:|",
        f'| `dmf.datasets.synthetic` ({syn["large_graph_warnings"]} "large graph" warnings) '
        f"| {syn['client_rss_growth_mb']:.0f} MB |",
        f"| `model.save` | {save['client_rss_growth_mb']:.0f} MB |",
        "| `dmf.load` (lazy by size) + one single-user `recommend` "
        f"| {load['client_rss_growth_mb']:.0f} MB |",
    ]
    return {
        "table": "\n".join(lines),
        "recommend_ms": f"{data['warm_single_user_recommend_ms']:.1f} ms",
    }


if __name__ == "__main__":
    main()
