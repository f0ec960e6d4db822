"""Memory ceilings: ALS and SGD fits on the ML-20M shape (20M ratings) under 6 GB peak RSS.

Not an asv benchmark (``bench_memory.py`` is its asv twin): run it as a script::

    python tools/bench/memory_ceiling.py                 # ALS and SGD, rank 64, 2 iterations
    python tools/bench/memory_ceiling.py --methods als --iterations 1

The data (138,493 users x 26,744 items, 20,000,263 ratings from
``dmf.datasets.synthetic``, seed 0) is written once to Parquet under
``$DMF_BENCH_CACHE``. Each fit runs in a fresh Python process that reads the
Parquet file with ``dmf.read_parquet``, builds the Ratings and fits on the
default (threaded) scheduler; its peak resident memory is reported two ways:
the kernel's high-water mark (``ru_maxrss``, the whole process) and the
largest of psutil samples every 50 ms. Reading and building are included:
the ceiling is what a user's process needs end to end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import _report

ROOT = Path(__file__).resolve().parents[2]
LIMIT_GB = 6.0

CHILD = r"""
import json, resource, sys, threading, time
import psutil
proc, peak, stop = psutil.Process(), [0], []
def sample():
    while not stop:
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
import dmf
from dmf.testing import random_frame
method, path, rank, iters = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cls = dmf.METHODS[method]
n = {"als": "max_iter", "sgd": "max_iter"}[method]
cls(rank=rank, **{n: 1}).fit(dmf.from_pandas(random_frame(40, 30, 0.3)))  # compile kernels
t0 = time.perf_counter()
r = dmf.read_parquet(path)
t_build = time.perf_counter() - t0
t0 = time.perf_counter()
model = cls(rank=rank, seed=0, **{n: iters}).fit(r)
t_fit = time.perf_counter() - t0
stop.append(1)
secs = [h.get("seconds") for h in model.history_ if h.get("seconds") is not None]
print(json.dumps({
    "nnz": r.nnz, "build_s": t_build, "fit_s": t_fit,
    "s_per_iter": sum(secs) / len(secs) if secs else None,
    "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "sampled": peak[0],
}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="als,sgd")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--json", type=Path, default=_report.default_json(__file__))
    args = p.parse_args()
    ctx = _report.context(__file__)
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import files

    t0 = time.perf_counter()
    train, _ = files("ml20m")
    print(f"data: {train} (ready in {time.perf_counter() - t0:.0f} s)", flush=True)
    rows = []
    for method in args.methods.split(","):
        cmd = [
            sys.executable,
            "-c",
            CHILD,
            method,
            str(train),
            str(args.rank),
            str(args.iterations),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"{method}: failed ({proc.returncode}): {proc.stderr[-800:]}")
            continue
        res = json.loads(lines[-1])
        rows.append((method, res))
        print(method, res, flush=True)
    result = {**ctx, "rank": args.rank, "iterations": args.iterations, "limit_gb": LIMIT_GB}
    result["rows"] = [{"method": m, **r} for m, r in rows]
    print(figures(result)["table"])
    _report.write(args.json, result)


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/memory_ceiling.json``."""
    limit = data["limit_gb"]
    lines = [
        "| fit | ratings | rank | iterations | build s | fit s | s/iteration | "
        f"peak RSS GB (ru_maxrss) | sampled GB | under {limit:g} GB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in data["rows"]:
        ok = "yes" if r["maxrss"] < limit * 1e9 else "**no**"
        spi = "" if r["s_per_iter"] is None else f"{r['s_per_iter']:.1f}"
        lines.append(
            f"| {r['method'].upper()} | {r['nnz']:,} | {data['rank']} | {data['iterations']} | "
            f"{r['build_s']:.1f} | {r['fit_s']:.1f} | {spi} | {r['maxrss'] / 1e9:.2f} | "
            f"{r['sampled'] / 1e9:.2f} | {ok} |"
        )
    return {"table": "\n".join(lines) + "\n\n" + _report.measured(data)}


if __name__ == "__main__":
    main()
