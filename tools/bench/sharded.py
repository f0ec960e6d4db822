"""Sharded ALS factors: client memory and seconds per iteration, cluster vs threads.

Run as a script (bounded by ``--timeout``; several minutes at the default shape)::

    nice python tools/bench/sharded.py                      # 1M x 10K, 10M ratings, rank 64
    nice python tools/bench/sharded.py --users 100000 --items 5000 --nnz 1000000   # quick

Two fresh processes fit the same synthetic data (``dmf.datasets.synthetic``,
seed 0) for ``--iterations`` ALS iterations at rank ``--rank``:

- ``cluster``: a 2-worker ``LocalCluster`` (processes, 1 thread each). The
  ratings are built and persisted on the cluster first; the client's resident
  memory is sampled every 50 ms and its growth during ``fit`` alone is
  reported (peak during the fit minus the level just before it).
- ``threads``: Dask's threaded scheduler in one process with 2 threads, the
  same blocks as task graphs.

Seconds per iteration are the fits' own ``history_`` (the first iteration,
which compiles kernels and places blocks, reported apart). Writes
``docs/_data/sharded.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import gc, json, sys, threading, time
import psutil

def main(mode, n_users, n_items, nnz, rank, iters):
    import dask, dmf
    proc, peak, stop = psutil.Process(), [0], []

    def sample():
        while not stop:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.05)

    client = None
    if mode == "cluster":
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0", memory_limit="8GiB")
        client = Client(cluster)
    else:
        dask.config.set(scheduler="threads", num_workers=2)
    t0 = time.perf_counter()
    r = dmf.datasets.synthetic(n_users=n_users, n_items=n_items, nnz=nnz, seed=0)
    r.persist() if hasattr(r, "persist") else None
    build = time.perf_counter() - t0
    gc.collect()
    before = proc.memory_info().rss
    peak[0] = before
    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    with dask.config.set({"dmf.in-process": False}):
        model = dmf.ALS(rank=rank, max_iter=iters, seed=0).fit(r)
    fit = time.perf_counter() - t0
    stop.append(1)
    secs = [h["seconds"] for h in model.history_]
    out = {
        "mode": mode, "nnz": r.nnz, "build_s": build, "fit_s": fit, "seconds": secs,
        "client_rss_before": before, "client_rss_growth": peak[0] - before,
        "factors": type(model.user_factors_).__module__.split(".")[0],
        "routing": getattr(model, "routing_", None),
        "train_rmse": model.history_[-1].get("train_rmse"),
    }
    print("RESULT " + json.dumps(out), flush=True)
    if client is not None:
        client.close()
        cluster.close()

if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:]))
"""


def run(mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-c", CHILD, mode]
    cmd += [str(v) for v in (args.users, args.items, args.nnz, args.rank, args.iterations)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--nnz", type=int, default=10_000_000)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1500.0, help="seconds per run")
    p.add_argument("--out", default=str(ROOT / "docs" / "_data" / "sharded.json"))
    args = p.parse_args()
    results = {mode: run(mode, args) for mode in ("cluster", "threads")}

    def steady(r: dict) -> float:
        s = r["seconds"][1:] or r["seconds"]
        return sum(s) / len(s)

    summary = {
        "shape": {k: getattr(args, k) for k in ("users", "items", "nnz", "rank", "iterations")},
        "runs": results,
        "client_rss_growth_mb": results["cluster"]["client_rss_growth"] / 2**20,
        "s_per_iter_cluster": steady(results["cluster"]),
        "s_per_iter_threads": steady(results["threads"]),
    }
    summary["ratio"] = summary["s_per_iter_cluster"] / summary["s_per_iter_threads"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
