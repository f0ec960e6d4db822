"""dmf implicit ALS against the ``implicit`` library's CPU ALS, side by side in one run.

Not an asv benchmark: run it as a script (needs the ``bench`` extra: implicit)::

    python tools/bench/als_vs_implicit.py                  # ML-10M shape, rank 64, 10 it
    python tools/bench/als_vs_implicit.py --shape ml1m

Data: ``dmf.datasets.synthetic`` (seed 0), seeded 80/20 split; ratings >= 4
are the positives (value 1) on both sides. Both use conjugate gradient with 3
steps, ``alpha`` (confidence ``1 + alpha``), plain ``reg``, the same rank and
iterations; ``implicit`` runs 2 threads, dmf the threaded Dask scheduler (2
threads). Seconds per iteration exclude dmf's first iteration (numba
compilation) and implicit's fit overhead is included in its mean. precision@10
is computed the same way for both on a seeded sample of test users with a
positive test item, training positives masked. Compare rows of one run: the
machine is shared.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

SHAPES = {
    "ml1m": (6_040, 3_706, 1_000_000),
    "ml10m": (70_000, 10_700, 10_000_000),
}


def precision_at_10(U, V, train: sp.csr_array, test: sp.csr_array, users: np.ndarray) -> float:
    hits = 0.0
    for lo in range(0, len(users), 2_000):
        u = users[lo : lo + 2_000]
        s = U[u] @ V.T
        tr = train[u]
        s[np.repeat(np.arange(len(u)), np.diff(tr.indptr)), tr.indices] = -np.inf
        top = np.argpartition(-s, 10, axis=1)[:, :10]
        te = test[u].toarray() > 0
        hits += np.take_along_axis(te, top, axis=1).sum()
    return hits / (10 * len(users))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="ml10m")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--alpha", type=float, default=40.0)
    p.add_argument("--reg", type=float, default=0.01)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--eval-users", type=int, default=10_000)
    p.add_argument("--chunk-nnz", type=int, default=500_000)
    args = p.parse_args()

    import pandas as pd

    import dmf

    m, n, nnz = SHAPES[args.shape]
    df = dmf.datasets.synthetic(m, n, nnz, seed=0, timestamps=False).to_pandas(codes=True)
    mask = np.random.default_rng(0).random(len(df)) < 0.8
    tr, te = df[mask & (df.rating >= 4)], df[~mask & (df.rating >= 4)]
    shape = (m, n)
    train_csr = sp.csr_array(
        (np.ones(len(tr), np.float32), (tr.user.to_numpy(), tr.item.to_numpy())), shape=shape
    )
    test_csr = sp.csr_array(
        (np.ones(len(te), np.float32), (te.user.to_numpy(), te.item.to_numpy())), shape=shape
    )
    cand = np.flatnonzero(np.diff(test_csr.indptr) > 0)
    users = np.random.default_rng(1).choice(cand, min(args.eval_users, len(cand)), replace=False)
    print(f"{args.shape}: {train_csr.nnz:,} train positives, {test_csr.nnz:,} test positives")

    rows = []
    # dmf: Ratings over the same codes (ids 0..n-1 so codes coincide with the CSR's).
    pos = pd.DataFrame({"user": tr.user, "item": tr.item, "rating": np.float32(1.0)})
    train = dmf.from_pandas(pos, chunk_nnz=args.chunk_nnz)
    model = dmf.ALS(
        rank=args.rank, implicit=True, alpha=args.alpha, reg=args.reg, max_iter=args.iters,
        solver="cg", cg_steps=3, unobserved_weight=1.0, weighted_reg=False, init_scale=0.1,
    )  # fmt: skip  # the implicit library's model (Hu et al.), not dmf's top-N defaults
    t = time.perf_counter()
    model.fit(train)
    total = time.perf_counter() - t
    sec = model.history["seconds"].to_numpy()
    U = np.zeros((m, args.rank), np.float32)
    V = np.zeros((n, args.rank), np.float32)
    U[np.asarray(train.users, np.int64)] = model.user_factors_
    V[np.asarray(train.items, np.int64)] = model.item_factors_
    rows.append(
        ("dmf ALS implicit (CG)", total, float(sec[1:].mean()),
         precision_at_10(U, V, train_csr, test_csr, users))
    )  # fmt: skip

    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        print("implicit is not installed (pip install implicit): skipping it")
    else:
        from threadpoolctl import threadpool_limits

        als = AlternatingLeastSquares(
            factors=args.rank, regularization=args.reg, alpha=args.alpha,
            iterations=args.iters, use_cg=True, num_threads=2, random_state=0,
            calculate_training_loss=False,
        )  # fmt: skip
        with threadpool_limits(1, "blas"):
            t = time.perf_counter()
            als.fit(train_csr, show_progress=False)
            total = time.perf_counter() - t
        rows.append(
            ("implicit 0.7 ALS (CG, 2 threads)", total, total / args.iters,
             precision_at_10(als.user_factors, als.item_factors, train_csr, test_csr, users))
        )  # fmt: skip

    print(f"\nrank {args.rank}, alpha {args.alpha}, reg {args.reg}, {args.iters} iterations")
    print("| library | fit s | s / iteration | precision@10 |")
    print("|---|---:|---:|---:|")
    for name, total, per_it, p10 in rows:
        print(f"| {name} | {total:.1f} | {per_it:.2f} | {p10:.4f} |")
    if len(rows) == 2:
        print(f"\ndmf s/iteration / implicit s/iteration: {rows[0][2] / rows[1][2]:.2f}")


if __name__ == "__main__":
    main()
