"""Speed and memory of top-k recommendation and ranking evaluation at MovieLens-20M shape.

Builds power-law synthetic ratings of the ML-20M shape (138K users, 27K items,
20M ratings by default), an 80/20 random split, and a model with random rank-64
factors (timing does not depend on the factors' values), then times:

- ``recommend_all(k=10, exclude=train)`` (computed to a pandas DataFrame),
  and without ``exclude``;
- ``evaluate`` with every ranking metric at k=10 (and AUC) against the test part;
- ``recommend`` for one user (median over many calls, after the first);
- the dense block product alone (the arithmetic floor: every user x every item).

Peak RSS is sampled every 20 ms during each step (the whole process: the
threaded scheduler runs in it). Run::

    python tools/bench/recommend_speed.py            # ML-20M shape
    python tools/bench/recommend_speed.py --scale 0.1  # quick

Targets: recommend_all < 30 s and peak RSS < 4 GB; evaluate < 90 s.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import _report
import numpy as np
import pandas as pd
import psutil

import dmf


class PeakRSS:
    """Sample this process's RSS in a thread; ``peak`` in bytes."""

    def __init__(self, every: float = 0.02) -> None:
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def __enter__(self) -> PeakRSS:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.every)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def power_law_ratings(n_users: int, n_items: int, nnz: int, seed: int = 0) -> pd.DataFrame:
    """Distinct (user, item) pairs with Zipf-like popularity on both sides, half-star ratings."""
    rng = np.random.default_rng(seed)
    pu = 1.0 / np.arange(1, n_users + 1) ** 0.6
    pi = 1.0 / np.arange(1, n_items + 1) ** 0.9
    pu, pi = pu / pu.sum(), pi / pi.sum()
    want = int(nnz * 1.15)
    u = rng.choice(n_users, want, p=pu)
    i = rng.choice(n_items, want, p=pi)
    pair = np.unique(u.astype(np.int64) * n_items + i)
    pair = rng.permutation(pair)[:nnz]
    # every user and item at least once, as in MovieLens
    extra_u = np.arange(n_users, dtype=np.int64) * n_items + rng.integers(0, n_items, n_users)
    extra_i = rng.integers(0, n_users, n_items).astype(np.int64) * n_items + np.arange(n_items)
    pair = np.unique(np.concatenate([pair, extra_u, extra_i]))
    rating = (rng.integers(1, 11, len(pair)) / 2).astype(np.float32)
    return pd.DataFrame({"user": pair // n_items, "item": pair % n_items, "rating": rating})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the ML-20M shape")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--skip-no-exclude", action="store_true")
    ap.add_argument("--json", type=Path, default=_report.default_json(__file__))
    args = ap.parse_args()
    ctx = _report.context(__file__)
    n_users = int(138_493 * args.scale)
    n_items = int(26_744 * max(args.scale, 0.2))
    nnz = int(20_000_263 * args.scale)
    proc = psutil.Process()
    t0 = time.perf_counter()
    df = power_law_ratings(n_users, n_items, nnz)
    r = dmf.from_pandas(df)
    del df
    train, test = dmf.split.random(r, test_size=0.2, seed=0)
    model = dmf.Baseline(max_iter=1).fit(train)
    rng = np.random.default_rng(1)
    model.user_factors_ = (rng.standard_normal((model.users_.size, args.rank)) * 0.1).astype(
        np.float32
    )
    model.item_factors_ = (rng.standard_normal((model.items_.size, args.rank)) * 0.1).astype(
        np.float32
    )
    setup = time.perf_counter() - t0
    print(
        f"data: {r.n_users:,} users x {r.n_items:,} items, {r.nnz:,} ratings "
        f"(train {train.nnz:,} in {train.n_blocks} blocks, test {test.nnz:,}); rank {args.rank}; "
        f"setup {setup:.1f} s; RSS after setup {proc.memory_info().rss / 2**30:.2f} GB"
    )
    # compile the kernels outside the timings (numba, once per process)
    small = test.to_pandas().head(50)
    dmf.evaluate(model, small, train=train, metrics=["ndcg@10", "auc"])
    model.recommend([int(model.users_[0])], k=args.k)

    rows = []

    def step(name: str, func, target: str = "") -> None:
        with PeakRSS() as mem:
            t = time.perf_counter()
            out = func()
            dt = time.perf_counter() - t
        rows.append((name, dt, mem.peak / 2**30, target))
        print(f"  {name}: {dt:.2f} s, peak RSS {mem.peak / 2**30:.2f} GB", flush=True)
        return out

    u_all = np.arange(model.users_.size)

    def block_products() -> None:
        step_rows = max(1, (1 << 24) // model.items_.size)
        for a in range(0, len(u_all), step_rows):
            model._score_users(u_all[a : a + step_rows])

    step("dense block products only (serial chunks, BLAS threads)", block_products)
    recs = step(
        f"recommend_all(k={args.k}, exclude=train).compute()",
        lambda: model.recommend_all(k=args.k, exclude=train).compute(),
        "< 30 s, < 4 GB",
    )
    assert len(recs) == args.k * model.users_.size, len(recs)
    if not args.skip_no_exclude:
        step(
            f"recommend_all(k={args.k}).compute()",
            lambda: model.recommend_all(k=args.k).compute(),
        )
    k = args.k
    metrics = [f"{m}@{k}" for m in ("precision", "recall", "ndcg", "map", "mrr", "hit_rate")]
    metrics += ["auc", f"coverage@{k}"]
    res = step(
        "evaluate(all ranking metrics @10 + auc, train=train)",
        lambda: dmf.evaluate(model, test, train=train, metrics=metrics, relevance_threshold=4.0),
        "< 90 s",
    )
    step(
        "evaluate(ranking metrics @10 without auc)",
        lambda: dmf.evaluate(
            model,
            test,
            train=train,
            metrics=[*metrics[:-2], f"coverage@{k}"],
            relevance_threshold=4.0,
        ),
    )
    print("  evaluate result:", {m: round(v, 5) for m, v in res.items()})
    # single-user recommend: the cached exclusion lists are built by the first call
    users = model.users_[rng.integers(0, model.users_.size, 400)]
    t = time.perf_counter()
    model.recommend([users[0]], k=k, exclude=train)
    first = time.perf_counter() - t
    times = []
    for u in users[1:]:
        t = time.perf_counter()
        model.recommend([u], k=k, exclude=train)
        times.append(time.perf_counter() - t)
    med = float(np.median(times)) * 1e3
    rows.append((f"recommend([user], k={k}, exclude=train) median of 399", med / 1e3, np.nan, ""))
    print(f"  recommend one user: first call {first:.2f} s (builds the cache), median {med:.2f} ms")
    result = {
        **ctx,
        "shape": {"users": r.n_users, "items": r.n_items, "nnz": r.nnz, "rank": args.rank},
        "steps": [
            {"step": name, "seconds": dt, "peak_rss_gb": None if np.isnan(peak) else peak,
             "target": target}
            for name, dt, peak, target in rows
        ],
    }  # fmt: skip
    print(figures(result)["table"])
    _report.write(args.json, result)


KEYS = {  # short names for the steps the pages quote
    "recommend_all": "recommend_all(k=10, exclude=train).compute()",
    "evaluate": "evaluate(all ranking metrics @10 + auc, train=train)",
    "products": "dense block products only (serial chunks, BLAS threads)",
}


def figures(data: dict) -> dict[str, str]:
    """What the pages show of ``docs/_data/recommend_speed.json``."""
    sh = data["shape"]
    lines = [
        f"{sh['users']:,} users x {sh['items']:,} items, {sh['nnz']:,} ratings, rank {sh['rank']}.",
        "",
        "| step | seconds | peak RSS GB | target |",
        "|---|---:|---:|---|",
    ]
    out = {}
    for row in data["steps"]:
        dt, peak = row["seconds"], row["peak_rss_gb"]
        secs = f"{dt * 1e3:.2f} ms" if dt < 0.1 else f"{dt:.2f} s"
        lines.append(
            f"| `{row['step']}` | {secs} | {'' if peak is None else f'{peak:.2f}'} "
            f"| {row['target']} |"
        )
        for key, name in KEYS.items():
            if row["step"] == name:
                out[key] = secs + ("" if peak is None else f", {peak:.2f} GB peak")
        if row["step"].startswith("recommend([user]"):
            out["one_user"] = secs
    out["table"] = "\n".join(lines) + "\n\n" + _report.measured(data)
    return out


if __name__ == "__main__":
    main()
