"""ALS speed on ML-10M-shaped synthetic data: seconds per iteration, GFLOP/s, peak RSS.

Not an asv benchmark: run it as a script (the work is under ``__main__``)::

    python tools/bench/als_speed.py                      # 70K x 10.7K, 10M ratings, rank 64
    python tools/bench/als_speed.py --nnz 1000000 --users 6040 --items 3706   # ML-1M shape

For each solver it fits ``dmf.ALS`` (explicit, float32) and reports the mean
seconds per iteration over iterations 2.. (iteration 1 includes numba's
compilation), the floating-point rate against float32 GEMM measured in the
same run, and for Cholesky the rate of its Gram-building loop alone (built from
the kernel's own gather and Gram functions with the kernel's switch between one
BLAS GEMM per short row and the lower-triangle tiled Gram for long ones, timed
on the user blocks, one block per thread, best of 3) and of the whole user
half-sweep kernel (Gram and solve, best of 3). Flop counts per half-sweep, as in
the issue: Cholesky ``nnz*k^2 + rows*k^3/3``; CG ``2*nnz*k*cg_steps``. GEMM is
counted ``2*n^3`` (best of 3); the flops the Gram loop executes (both triangles
for the GEMM rows) are shown too. The machine is shared: compare the rates
printed in one run, not across runs.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _report
import numpy as np


def gemm_gflops(n: int = 3072, reps: int = 3) -> float:
    """float32 GEMM rate of this process's BLAS (all threads), best of ``reps``."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def gram_loop_seconds(csrs, V, threads: int) -> float:
    """Wall time of the Cholesky kernel's Gram loop over all user blocks.

    Built from the kernel's own pieces (``dmf.kernels._als_linalg``), with its switch:
    a row of at most ``_BLAS_ROWS`` ratings is gathered row-major with its
    bias and target columns and multiplied by one BLAS GEMM call; a longer one
    is gathered transposed in chunks and goes through the register-tiled
    lower-triangle Gram. No solve. One block per thread, BLAS
    pinned to one thread as in a fit.
    """
    from numba import njit

    from dmf.kernels._als_linalg import (
        _BLAS_ROWS,
        _CHUNK,
        _gather_t,
        _gram_blas,
        _gram_lower,
        _round_up,
    )
    from dmf.kernels._blas import one_blas_thread as _one_blas_thread

    @njit(nogil=True)
    def grams(indptr, indices, data, Y):
        k = Y.shape[1]
        K = _round_up(k + 2, 4)
        GT = np.zeros((K, _CHUNK + 8), Y.dtype)
        A = np.empty((K, K), Y.dtype)
        G = np.empty((_BLAS_ROWS, k + 2), Y.dtype)
        C = np.empty((k + 2, k + 2), Y.dtype)
        ints = np.empty(3, np.int32)
        consts = np.array([1, 0], Y.dtype)
        flags = np.array([ord("N"), ord("T")], np.uint8)
        acc = 0.0
        for u in range(indptr.shape[0] - 1):
            lo, hi = indptr[u], indptr[u + 1]
            n = hi - lo
            if n <= _BLAS_ROWS:
                for idx in range(n):
                    j = indices[lo + idx]
                    for q in range(k):
                        G[idx, q] = Y[j, q]
                    G[idx, k] = 1
                    G[idx, k + 1] = data[lo + idx]
                _gram_blas(G, n, C, ints, consts, flags)
                acc += C[0, 0]
                continue
            A[:] = 0
            for c0 in range(lo, hi, _CHUNK):
                nc = min(_CHUNK, hi - c0)
                _gather_t(GT, indices, c0, nc, Y)
                for idx in range(nc):
                    GT[k, idx] = 1
                    GT[k + 1, idx] = data[c0 + idx]
                _gram_lower(GT, nc, A)
            acc += A[0, 0]
        return acc

    def run(c):
        with _one_blas_thread():
            return grams(c.indptr, c.indices, c.data, V)

    run(csrs[0])  # compile
    return _best_wall(run, csrs, threads)


def _best_wall(run, csrs, threads: int, reps: int = 3) -> float:
    """Best of ``reps`` wall times of ``run`` over all blocks, one block per thread.

    The best, as for the GEMM rate: other jobs on the shared machine only ever add time.
    """
    best = np.inf
    for _ in range(reps):
        t = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, csrs))
        best = min(best, time.perf_counter() - t)
    return best


def _blas_rows() -> int:
    from dmf.kernels._als_linalg import _BLAS_ROWS

    return _BLAS_ROWS


def kernel_seconds(csrs, V, threads: int) -> float:
    """Wall time of the real Cholesky kernel (gather, Gram, solve) over all user blocks."""
    from dmf.kernels._als_explicit import explicit_block
    from dmf.kernels._blas import one_blas_thread as _one_blas_thread

    dt = V.dtype.type
    vb = np.zeros(V.shape[0], V.dtype)

    def run(c):
        n = len(c.indptr) - 1
        X = np.zeros((n, V.shape[1]), V.dtype)
        b = np.zeros(n, V.dtype)
        with _one_blas_thread():
            explicit_block(
                c.indptr, c.indices, c.data, V, vb, dt(3.5), dt(0.1), dt(0.1), True, False, 1,
                False, X, b, False,
            )  # fmt: skip

    run(csrs[0])
    return _best_wall(run, csrs, threads)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=70_000)
    p.add_argument("--items", type=int, default=10_700)
    p.add_argument("--nnz", type=int, default=10_000_000)
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--cg-steps", type=int, default=3)
    p.add_argument("--chunk-nnz", type=int, default=1_000_000)
    p.add_argument("--solvers", default="cg,cholesky")
    p.add_argument("--json", type=Path, default=_report.default_json(__file__))
    args = p.parse_args()
    ctx = _report.context(__file__)

    import dask

    import dmf
    import dmf.engine._compute

    k = args.rank
    threads = dmf.engine._compute.n_threads()
    gemm = gemm_gflops()
    t = time.perf_counter()
    data = dmf.datasets.synthetic(
        args.users, args.items, args.nnz, seed=0, chunk_nnz=args.chunk_nnz, timestamps=False
    )
    print(
        f"data: {data!r} generated in {time.perf_counter() - t:.1f} s; "
        f"{threads} threads; float32 GEMM {gemm:.0f} GFLOP/s (measured now)"
    )
    m, n, nnz = data.n_users, data.n_items, data.nnz
    rows = []
    for solver in args.solvers.split(","):
        model = dmf.ALS(rank=k, max_iter=args.iters, solver=solver, cg_steps=args.cg_steps)
        t = time.perf_counter()
        model.fit(data)
        total = time.perf_counter() - t
        sec = model.history["seconds"].to_numpy()
        per_it = float(sec[1:].mean()) if len(sec) > 1 else float(sec[0])
        if solver == "cholesky":
            flops = 2 * nnz * k**2 + (m + n) * k**3 / 3
        else:
            flops = 2 * 2 * nnz * k * args.cg_steps
        rows.append(
            (solver, total, float(sec[0]), per_it, flops / per_it / 1e9,
             float(model.history["train_rmse"].iloc[-1]))
        )  # fmt: skip
        if solver == "cholesky":
            ucsr = dask.compute(data.row_csr())[0]
            gsec = gram_loop_seconds(ucsr, model.item_factors_, threads)
            useful = nnz * k**2 / gsec / 1e9
            counts = np.concatenate([np.diff(c.indptr) for c in ucsr])
            short = counts <= _blas_rows()
            kp = -(-(k + 2) // 4) * 4  # the tiled Gram's padded size
            executed = (
                2 * counts[short].sum() * (k + 2) ** 2 + counts[~short].sum() * kp * (kp + 4)
            ) / gsec / 1e9  # fmt: skip
            ksec = kernel_seconds(ucsr, model.item_factors_, threads)
            kuseful = (nnz * k**2 + m * k**3 / 3) / ksec / 1e9
    result = {
        **ctx,
        "shape": {"users": m, "items": n, "nnz": nnz, "blocks": data.n_blocks},
        "rank": k,
        "iters": args.iters,
        "gemm_gflops": gemm,
        "solvers": [
            dict(
                zip(
                    ("solver", "fit_s", "first_s", "iteration_s", "gflops", "train_rmse"),
                    r,
                    strict=True,
                )
            )
            for r in rows
        ],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }
    if "cholesky" in args.solvers:
        result["gram"] = {"seconds": gsec, "useful_gflops": useful, "executed_gflops": executed}
        result["kernel"] = {"seconds": ksec, "useful_gflops": kuseful, "blas_rows": _blas_rows()}
    print("\n\n".join(figures(result).values()))
    _report.write(args.json, result)


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/als_speed.json``."""
    gemm = data["gemm_gflops"]
    sh = data["shape"]
    lines = [
        f"ALS explicit, {sh['users']:,} users x {sh['items']:,} items, {sh['nnz']:,} ratings, "
        f"rank {data['rank']}, {data['iters']} iterations, {sh['blocks']} row blocks, float32; "
        f"float32 GEMM {gemm:.0f} GFLOP/s measured in the same run.",
        "",
        "| solver | fit s | iteration 1 s (compile) | s / iteration | GFLOP/s | % of GEMM "
        "| train RMSE |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    out = {}
    for r in data["solvers"]:
        lines.append(
            f"| {r['solver']} | {r['fit_s']:.1f} | {r['first_s']:.2f} | {r['iteration_s']:.2f} "
            f"| {r['gflops']:.1f} | {100 * r['gflops'] / gemm:.0f}% | {r['train_rmse']:.4f} |"
        )
        out[f"{r['solver']}_iteration"] = f"{r['iteration_s']:.2f} s"
    if "gram" in data:
        g, kern = data["gram"], data["kernel"]
        lines += [
            "",
            f"Cholesky Gram loop (user side, one half-sweep): {g['seconds']:.2f} s, "
            f"{g['useful_gflops']:.1f} GFLOP/s counted nnz·k² "
            f"({100 * g['useful_gflops'] / gemm:.0f}% of GEMM), {g['executed_gflops']:.1f} "
            f"GFLOP/s executed (full GEMM for rows of at most {kern['blas_rows']} ratings, "
            "lower-triangle tiles above). The whole kernel (gather, Gram, solve): "
            f"{kern['seconds']:.2f} s, {100 * kern['useful_gflops'] / gemm:.0f}% of GEMM.",
        ]
        out["gram_share"] = f"{100 * g['useful_gflops'] / gemm:.0f}%"
    out["table"] = "\n".join(lines) + "\n\n" + _report.measured(data)
    return out


if __name__ == "__main__":
    main()
