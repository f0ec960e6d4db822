"""Scale check: build Ratings from a 20M-row Parquet data set (ML-20M shape) — time and peak RSS.

Not an asv benchmark: run it as a script.

    python tools/bench/build_ratings.py                  # 138K users x 27K items, 20M ratings
    python tools/bench/build_ratings.py --nnz 2000000    # a quicker, smaller run

1. Writes the synthetic data set (``dmf.datasets.synthetic``, seed 0) as Parquet
   files in a temporary folder outside the repository, block by block (each
   rating goes to one of ``--files`` files at random, so every file mixes all
   users, as an unsorted export would). Columns: ``u``, ``i`` (int64 ids),
   ``r`` (float32), ``t`` (int64 seconds).
2. In a fresh Python process, times ``dmf.read_parquet(folder, user="u",
   item="i", rating="r")`` and reports that process's peak resident memory
   (``resource.getrusage``: the whole process, interpreter and imports
   included) with the import cost reported separately.

Targets: under 60 s and under 3 GB peak RSS on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The measured process. Peak RSS two ways: the kernel's high-water mark
# (ru_maxrss, KiB on Linux) and psutil samples every 20 ms. The parent that
# starts it stays small (it never imports dmf), since Linux carries ru_maxrss
# over from the forking process.
CHILD = r"""
import json, resource, sys, threading, time
import psutil
proc = psutil.Process()
peak = [0]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
import dmf
t_import = time.perf_counter() - t0
rss_import = proc.memory_info().rss / 1e9
cols = json.loads(sys.argv[2])
t0 = time.perf_counter()
r = dmf.read_parquet(sys.argv[1], **cols)
seconds = time.perf_counter() - t0
stop.set()
hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
print(json.dumps({"seconds": seconds, "peak_rss_gb": max(hwm, peak[0] / 1e9),
                  "sampled_peak_gb": peak[0] / 1e9, "import_s": t_import,
                  "import_rss_gb": rss_import, "nnz": r.nnz, "n_users": r.n_users,
                  "n_items": r.n_items, "n_blocks": r.n_blocks}))
"""


def write_parquet(folder: Path, n_users: int, n_items: int, nnz: int, n_files: int) -> float:
    """Write the synthetic ratings as ``n_files`` Parquet files; returns seconds taken."""
    import dask
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import dmf

    t0 = time.perf_counter()
    r = dmf.datasets.synthetic(n_users=n_users, n_items=n_items, nnz=nnz, seed=0)
    schema = pa.schema(
        [("u", pa.int64()), ("i", pa.int64()), ("r", pa.float32()), ("t", pa.int64())]
    )
    writers = [pq.ParquetWriter(folder / f"part-{k:03d}.parquet", schema) for k in range(n_files)]
    rng = np.random.default_rng(0)
    try:
        for d in r.blocks:
            (b,) = dask.compute(d)
            dest = rng.integers(0, n_files, b.nnz)
            order = np.argsort(dest, kind="stable")
            cuts = np.searchsorted(dest[order], np.arange(n_files + 1))
            for k, w in enumerate(writers):
                sel = order[cuts[k] : cuts[k + 1]]
                sel = sel[rng.permutation(len(sel))]
                table = pa.table(
                    {
                        "u": (b.rows[sel].astype(np.int64) + b.start + 1),
                        "i": b.cols[sel].astype(np.int64) + 1,
                        "r": b.data[sel],
                        "t": b.ts[sel],
                    },
                    schema=schema,
                )
                w.write_table(table)
            del b
    finally:
        for w in writers:
            w.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=138_000)
    ap.add_argument("--items", type=int, default=27_000)
    ap.add_argument("--nnz", type=int, default=20_000_000)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=1, help="fresh-process builds to time")
    ap.add_argument("--keep", action="store_true", help="keep the Parquet folder")
    ap.add_argument("--write-only", help=argparse.SUPPRESS)  # internal: the writer process
    args = ap.parse_args()
    if args.write_only:
        secs = write_parquet(Path(args.write_only), args.users, args.items, args.nnz, args.files)
        print(secs)
        return

    tmp = Path(tempfile.mkdtemp(prefix="dmf-build-ratings-"))
    try:
        # Written by another process, so this one stays small (see CHILD).
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--write-only",
                str(tmp),
                "--users",
                str(args.users),
                "--items",
                str(args.items),
                "--nnz",
                str(args.nnz),
                "--files",
                str(args.files),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        gen_s = float(out.stdout.strip().splitlines()[-1])
        size_mb = sum(p.stat().st_size for p in tmp.glob("*.parquet")) / 1e6
        print(
            f"wrote {args.nnz:,} ratings ({args.users:,} x {args.items:,}) to {tmp} "
            f"as {args.files} files, {size_mb:.0f} MB, in {gen_s:.1f} s",
            flush=True,
        )
        cols = json.dumps({"user": "u", "item": "i", "rating": "r"})
        rows = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(tmp), cols],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print()
        print(
            "| run | build s | peak RSS GB | sampled peak GB | import s | RSS after import GB "
            "| nnz | blocks |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k, row in enumerate(rows):
            print(
                f"| {k + 1} | {row['seconds']:.1f} | {row['peak_rss_gb']:.2f} | "
                f"{row['sampled_peak_gb']:.2f} | {row['import_s']:.1f} | "
                f"{row['import_rss_gb']:.2f} | {row['nnz']:,} | {row['n_blocks']} |"
            )
        best = min(r["seconds"] for r in rows)
        peak = max(r["peak_rss_gb"] for r in rows)
        print()
        print(
            f"target < 60 s: {'met' if best < 60 else 'NOT met'} ({best:.1f} s); "
            f"target < 3 GB peak RSS: {'met' if peak < 3 else 'NOT met'} ({peak:.2f} GB)"
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
