"""How long ``dmf.datasets.synthetic`` takes at the ML-10M and ML-20M shapes, and its peak RSS.

Not an asv benchmark: run it as a script (each shape in a fresh process, after
one small warm-up call that compiles the numba kernels, reported separately).

    python tools/bench/synthetic_speed.py
"""

from __future__ import annotations

import json
import subprocess
import sys

SHAPES = {
    "ML-10M": (70_000, 10_700, 10_000_000),
    "ML-20M": (138_000, 27_000, 20_000_000),
}

CHILD = r"""
import json, resource, sys, time
import dmf
n_users, n_items, nnz = map(int, sys.argv[1:4])
t0 = time.perf_counter()
dmf.datasets.synthetic(n_users=50, n_items=40, nnz=500)  # compiles the kernels
warm = time.perf_counter() - t0
t0 = time.perf_counter()
r = dmf.datasets.synthetic(n_users=n_users, n_items=n_items, nnz=nnz, seed=0)
secs = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
print(json.dumps({"seconds": secs, "compile_s": warm, "peak_rss_gb": peak,
                  "blocks": r.n_blocks, "max_user": int(r.user_counts.max()),
                  "max_item": int(r.item_counts.max())}))
"""


def main() -> None:
    print("| shape | users | items | ratings | generate s | compile s | peak RSS GB | blocks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, (u, i, n) in SHAPES.items():
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(u), str(i), str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {name} | {u:,} | {i:,} | {n:,} | {row['seconds']:.1f} | {row['compile_s']:.1f} "
            f"| {row['peak_rss_gb']:.2f} | {row['blocks']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
