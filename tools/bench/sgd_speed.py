"""Speed of dmf.SGD: seconds per epoch and ratings per second against the memory bound.

Run: ``python tools/bench/sgd_speed.py [--shape large] [--rank 64] [--epochs 5] [--grids 2,4]``

Data: the synthetic ML-10M shape (69,878 x 10,677, 10M ratings; 80% used for
training), generated once by ``dmf.datasets.synthetic`` and cached by
``benchmarks/__init__.py``. The numba kernel is compiled by a tiny fit first.

Printed per grid: median seconds per epoch over ``--epochs`` epochs (from
``model.history``), ratings processed per second, and that rate against the
memory-bound estimate: each rating reads and writes two factor rows, 2·k·4
bytes at the machine's 13 GB/s memory read bandwidth (``DESIGN.md``), so the
bound is 13e9 / (8·k) ratings/s. Also the kernel alone on one thread (CPU
time of one pass over one grid block, no Dask), and the padding of the
internal rank (``--pad-rank``, default 100: padded to a multiple of 16, 112,
as dmf does, vs a multiple of 4, 100).

Targets: >= 25% of the bound and <= 1.5 s per epoch at rank 64.
The machine is shared with other jobs: figures are measured under load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import _report
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BANDWIDTH = 13e9  # bytes/s, memory read, 2 threads (DESIGN.md)


def load(shape: str):
    import pandas as pd

    import dmf

    sys.path.insert(0, str(ROOT))
    from benchmarks.common import files

    # The whole shape (train and test files together): 10M ratings for "large".
    return dmf.from_pandas(pd.concat([pd.read_parquet(f) for f in files(shape)]))


def fit_epochs(ratings, rank: int, epochs: int, grid: int | None) -> tuple[float, object]:
    """Fit ``epochs`` epochs; returns (process CPU seconds per epoch, model).

    The CPU time per epoch is the difference between this fit and a 1-epoch
    fit, over ``epochs - 1``: the grid layout (built once per fit) drops out.
    """
    import dmf

    def cpu_of(n: int) -> tuple[float, object]:
        model = dmf.SGD(rank=rank, max_iter=n, grid=grid, lr=0.005, reg=0.02, seed=0)
        cpu = time.process_time()
        model.fit(ratings)
        return time.process_time() - cpu, model

    one, _ = cpu_of(1)
    many, model = cpu_of(epochs)
    return (many - one) / max(1, epochs - 1), model


def kernel_alone(ratings, rank: int) -> float:
    """ns per rating of one pass over one grid block (of a 2x2 grid), CPU time, one thread."""
    from dmf.kernels._rng import stream_key
    from dmf.kernels._sgd import kernel_for, tile_rows, visit_segments
    from dmf.models.sgd._common import PAD
    from dmf.models.sgd._grid import _build_grid, _grid_edges

    k = -(-rank // PAD) * PAD
    re_ = _grid_edges(ratings.user_counts, 2)
    ce = _grid_edges(ratings.item_counts, 2)
    blk = _build_grid(ratings, re_, ce, 0, "float32", tile_rows(k, 4))[0][0].compute()
    rng = np.random.default_rng(0)
    P = np.zeros((int(re_[1]), k), np.float32)
    Q = np.zeros((int(ce[1]), k), np.float32)
    P[:, :rank] = rng.normal(0, 0.1, (P.shape[0], rank))
    Q[:, :rank] = rng.normal(0, 0.1, (Q.shape[0], rank))
    bu, bi = np.zeros(P.shape[0], np.float32), np.zeros(Q.shape[0], np.float32)
    best = np.inf
    for e in range(3):
        lo, hi = visit_segments(blk.tiles, stream_key(0, 0, e, 0, 0))
        t = time.thread_time()
        kernel_for(k)(
            blk.users, blk.items, blk.ratings, lo, hi, P, Q, bu, bi,
            3.5, 0.005, 0.02, 0.02, True,
        )  # fmt: skip
        best = min(best, time.thread_time() - t)
    return best / blk.nnz * 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="large")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--grids", default="2,4")
    ap.add_argument("--pad-rank", type=int, default=100)
    ap.add_argument("--json", type=Path, default=_report.default_json(__file__))
    args = ap.parse_args()

    import dmf
    import dmf.models.sgd._common as sgd_mod
    from dmf.testing import random_ratings

    result = {**_report.context(__file__), "shape": args.shape, "rank": args.rank}
    t = time.perf_counter()
    ratings = load(args.shape)
    print(f"# {args.shape}: {ratings}  (loaded in {time.perf_counter() - t:.1f} s)")
    result["nnz"] = ratings.nnz
    dmf.SGD(rank=args.rank, max_iter=1).fit(random_ratings())  # compile the kernel
    k = args.rank
    result["bound"] = BANDWIDTH / (2 * k * 4)
    result["grids"] = []
    for g in [int(x) for x in args.grids.split(",") if x.strip().isdigit()]:
        cpu, model = fit_epochs(ratings, k, args.epochs, g)
        sec = float(np.median(model.history["seconds"]))
        result["grids"].append(
            {"grid": g, "epoch_s": sec, "cpu_s": cpu, "load": os.getloadavg()[0]}
        )
        print(figures(result)["grids"].splitlines()[-1], flush=True)
    result["kernel_ns"] = kernel_alone(ratings, k)
    result["padding"] = []
    for pad in (16, 4, 16, 4):  # interleaved: the load drifts
        old = sgd_mod.PAD
        sgd_mod.PAD = pad
        try:
            dmf.SGD(rank=args.pad_rank, max_iter=1).fit(random_ratings())
            cpu, model = fit_epochs(ratings, args.pad_rank, args.epochs, 2)
        finally:
            sgd_mod.PAD = old
        kpad = -(-args.pad_rank // pad) * pad
        sec = float(np.median(model.history["seconds"]))
        result["padding"].append({"internal_rank": kpad, "rank": args.pad_rank, "epoch_s": sec,
                                  "cpu_s": cpu})  # fmt: skip
    out = figures(result)
    print(out["grids"], out["kernel"], out["padding"], sep="\n\n")
    _report.write(args.json, result)


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/sgd_speed.json``."""
    nnz, bound, k = data["nnz"], data["bound"], data["rank"]
    lines = [
        "| grid | rank | s/epoch (median) | ratings/s | memory bound ratings/s | % of bound "
        "| CPU s/epoch (all threads) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in data["grids"]:
        rate = nnz / g["epoch_s"]
        lines.append(
            f"| {g['grid']} | {k} | {g['epoch_s']:.3f} | {rate / 1e6:.1f} M | {bound / 1e6:.1f} M "
            f"| {100 * rate / bound:.0f}% | {g['cpu_s']:.3f} |"
        )
    out = {"grids": "\n".join(lines) + "\n\n" + _report.measured(data) if "grids" in data else ""}
    if "kernel_ns" in data:
        ns = data["kernel_ns"]
        out["kernel"] = f"{ns:.1f} ns per rating ({1e3 / ns:.1f} M ratings/s per thread)"
    pad = [
        "| internal rank | rank | s/epoch (median, grid 2) | CPU s/epoch |",
        "|---|---:|---:|---:|",
    ]
    for p in data.get("padding", []):
        pad.append(
            f"| {p['internal_rank']} | {p['rank']} | {p['epoch_s']:.3f} | {p['cpu_s']:.3f} |"
        )
    out["padding"] = "\n".join(pad)
    if data.get("grids"):
        secs = [g["epoch_s"] for g in data["grids"]]
        rates = [nnz / s / 1e6 for s in secs]
        out["epoch_s"] = f"{min(secs):.2f}-{max(secs):.2f} s"
        out["rate"] = f"{min(rates):.1f}-{max(rates):.1f} M ratings/s"
    return out


if __name__ == "__main__":
    main()
