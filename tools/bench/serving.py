"""Single-user serving: fold-in and recommend latency, plus model save/load, at ML-20M shape.

Builds an ALS model of the MovieLens-20M shape (138,493 users x 26,744 items by
default) with random rank-64 factors and biases (latency does not depend on
their values; the fold-in solve and the top-k are the same code a fitted
model runs), then times, each call in this process (no Dask graph on these
paths):

- ``model.fold_in(df)`` of 1 new user with 50 ratings (target: median < 5 ms);
- ``model.fold_in(df)`` of 1 known user (replaces a row: copies the user arrays);
- ``model.fold_in(df)`` of 100 new users x 50 ratings;
- ``model.recommend(users=[u], k=10)`` for one user against all items
  (target: median < 2 ms, p99 < 10 ms);
- ``model.save(path)`` / ``dmf.load(path)`` to a local directory and to ``memory://``.

Run::

    python tools/bench/serving.py                  # ML-20M shape, rank 64
    python tools/bench/serving.py --users 20000 --repeat 200   # quicker

The machine is shared: report medians and p99 from one run, measured side by side.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _report
import numpy as np
import pandas as pd

import dmf


def random_model(n_users: int, n_items: int, rank: int, seed: int = 0) -> dmf.ALS:
    """An ALS model with random factors, as if fitted on ``n_users x n_items`` ratings."""
    rng = np.random.default_rng(seed)
    model = dmf.ALS(rank=rank)
    model.users_ = pd.Index(np.arange(n_users, dtype=np.int64))
    model.items_ = pd.Index(np.arange(n_items, dtype=np.int64))
    model.user_counts_ = rng.integers(1, 500, n_users).astype(np.int64)
    model.item_counts_ = rng.integers(1, 5000, n_items).astype(np.int64)
    model.global_mean_ = 3.5
    model.rating_scale_ = (0.5, 5.0)
    model.row_edges_ = np.linspace(0, n_users, 9).astype(np.int64)
    model.train_info_ = {"n_users": n_users, "n_items": n_items, "nnz": 0}
    model.history_ = []
    model.user_factors_ = (rng.standard_normal((n_users, rank)) * 0.1).astype(np.float32)
    model.item_factors_ = (rng.standard_normal((n_items, rank)) * 0.1).astype(np.float32)
    model.user_bias_ = (rng.standard_normal(n_users) * 0.1).astype(np.float32)
    model.item_bias_ = (rng.standard_normal(n_items) * 0.1).astype(np.float32)
    model.n_iter_ = 0
    return model


def ratings_of(users: list, n_items: int, per_user: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = [
        pd.DataFrame(
            {
                "user": u,
                "item": rng.choice(n_items, per_user, replace=False),
                "rating": rng.integers(1, 11, per_user) / 2.0,
            }
        )
        for u in users
    ]
    return pd.concat(parts, ignore_index=True)


def timed(fn: Callable[[], object], repeat: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(repeat)
    for j in range(repeat):
        t0 = time.perf_counter()
        fn()
        out[j] = time.perf_counter() - t0
    return out * 1e3  # ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=138_493)
    ap.add_argument("--items", type=int, default=26_744)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=500)
    ap.add_argument("--json", type=Path, default=_report.default_json(__file__))
    args = ap.parse_args()
    ctx = _report.context(__file__)

    t0 = time.perf_counter()
    model = random_model(args.users, args.items, args.rank)
    print(
        f"model: {args.users:,} users x {args.items:,} items, rank {args.rank} "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    rows = []

    def report(name: str, ms: np.ndarray, target: str = "") -> None:
        med, p99 = float(np.median(ms)), float(np.percentile(ms, 99))
        rows.append((name, len(ms), med, p99, target))

    one_new = ratings_of([-1], args.items, 50, seed=1)
    report(
        "fold_in: 1 new user, 50 ratings",
        timed(lambda: model.fold_in(one_new), args.repeat),
        "median < 5 ms",
    )
    grown = model
    counter = iter(range(10**9))

    def chained() -> None:  # a stream of new users folded one after another
        nonlocal grown
        grown = grown.fold_in(one_new.assign(user=-2 - next(counter)))

    report("fold_in: stream of new users, each onto the last", timed(chained, args.repeat))
    one_known = ratings_of([7], args.items, 50, seed=2)
    report(
        "fold_in: 1 known user (row replaced, arrays copied)",
        timed(lambda: model.fold_in(one_known), max(20, args.repeat // 10)),
    )
    hundred = ratings_of(list(range(-1000, -900)), args.items, 50, seed=3)
    report(
        "fold_in: 100 new users x 50 ratings",
        timed(lambda: model.fold_in(hundred), max(20, args.repeat // 10)),
    )
    rng = np.random.default_rng(4)
    picks = iter(rng.integers(0, args.users, 10**7))
    report(
        "recommend(users=[u], k=10), all items",
        timed(lambda: model.recommend(users=[int(next(picks))], k=10), args.repeat),
        "median < 2 ms, p99 < 10 ms",
    )
    folded = model.fold_in(one_new)
    report(
        "recommend for a folded-in user",
        timed(lambda: folded.recommend(users=[-1], k=10), args.repeat),
    )
    # Floors measured in the same run: what the two paths cannot go below.
    from dmf.data._blocks import CSR
    from dmf.serving._foldin import fold_in_users

    items50 = np.sort(one_new["item"].to_numpy()).astype(np.int32)
    csr = CSR(0, 1, args.items, np.array([0, 50]), items50, np.full(50, 4.0, np.float32))
    report(
        "floor: ALS solve of 1 user (fold_in_users)",
        timed(lambda: fold_in_users(model, csr), args.repeat),
    )
    V, u0 = model.item_factors_, model.user_factors_[0]
    report("floor: item_factors @ u (one GEMV)", timed(lambda: V @ u0, args.repeat))
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/m.zarr"
        report(
            "save (local dir, overwrite)",
            timed(lambda: model.save(path, overwrite=True), 5, warmup=1),
        )
        report("load (local dir)", timed(lambda: dmf.load(path), 5, warmup=1))
    url = "memory://serving-bench/m.zarr"
    report(
        "save (memory://, overwrite)",
        timed(lambda: model.save(url, overwrite=True), 5, warmup=1),
    )
    report("load (memory://)", timed(lambda: dmf.load(url), 5, warmup=1))

    result = {
        **ctx,
        "shape": {"users": args.users, "items": args.items, "rank": args.rank},
        "steps": [
            {"step": name, "calls": n, "median_ms": med, "p99_ms": p99, "target": target}
            for name, n, med, p99, target in rows
        ],
    }
    print(figures(result)["table"])
    _report.write(args.json, result)


KEYS = {
    "recommend": "recommend(users=[u], k=10), all items",
    "fold_in": "fold_in: 1 new user, 50 ratings",
}


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/serving.json``."""
    sh = data["shape"]
    lines = [
        f"A model of {sh['users']:,} users x {sh['items']:,} items, rank {sh['rank']}.",
        "",
        "| step | calls | median ms | p99 ms | target |",
        "|---|---:|---:|---:|---|",
    ]
    out = {}
    for r in data["steps"]:
        lines.append(
            f"| `{r['step']}` | {r['calls']} | {r['median_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['target']} |"
        )
        for key, name in KEYS.items():
            if r["step"] == name:
                out[key] = f"{r['median_ms']:.2f} ms median, {r['p99_ms']:.2f} ms p99"
    out["table"] = "\n".join(lines) + "\n\n" + _report.measured(data)
    return out


if __name__ == "__main__":
    main()
