"""Exact scoring against the approximate index of ``dmf serve --index ann``, by catalogue size.

For each catalogue size (default 26,744, 1M and 10M items, rank 64), one
process, one thread per query (as the server scores), this measures:

- exact: the latency of one user's top-10 over every item (``Scorer``), and the
  memory of the item rows;
- approximate (faiss IVF-Flat, ``nlist`` about ``2 sqrt(n)``): the build time
  (k-means on ``40 nlist`` sampled rows, then every row assigned; 2 threads),
  the index memory, and for each ``nprobe`` the latency of one query and
  recall@10 against the exact top-10 of the same queries.

Items: the ML-20M-shape model's implicit ALS item factors (``serve_load.py``
builds it), resampled with Gaussian noise of half each factor's spread to
reach the size, so the catalogue keeps the learned geometry (norms,
popularity direction); queries are the model's user vectors. Bounded: a few
hundred queries per size, fewer exact ones at 10M (each reads 2.6 GB).
Results go to ``docs/_data/ann_index.json``; :func:`figures` renders them.

Usage::

    nice python tools/bench/ann_index.py [--sizes 26744,1000000,10000000] [--nprobe 8,32,128]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

JSON = Path(__file__).resolve().parents[2] / "docs" / "_data" / "ann_index.json"


def _catalogue(V: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` augmented item rows ``[q_i, 1, b_i]`` (implicit ALS: no biases)."""
    d = V.shape[1]
    out = np.empty((n, d + 2), np.float32)
    if n <= len(V):
        out[:, :d] = V[:n]
    else:
        rng = np.random.default_rng(seed)
        spread = (0.5 * V.std(axis=0)).astype(np.float32)
        for a in range(0, n, 1 << 20):  # in blocks: no float64 temporaries of the whole
            b = min(n, a + (1 << 20))
            rows = V[rng.integers(0, len(V), b - a)]
            out[a:b, :d] = rows + rng.standard_normal((b - a, d), np.float32) * spread
    out[:, d] = 1.0
    out[:, d + 1] = 0.0
    return out


def _timed(fn: Any, queries: np.ndarray) -> tuple[list[Any], np.ndarray]:
    results, seconds = [], []
    for q in queries:
        t = time.perf_counter()
        results.append(fn(q))
        seconds.append(time.perf_counter() - t)
    return results, np.asarray(seconds) * 1e3


def run(args: argparse.Namespace) -> dict[str, Any]:
    import faiss
    from serve_load import make_model
    from threadpoolctl import threadpool_limits

    import dmf
    from dmf.server._ann import AnnScorer
    from dmf.server._scoring import Scorer

    model = dmf.load(make_model())
    V = np.asarray(model.item_factors_, np.float32)
    rng = np.random.default_rng(0)
    users = np.asarray(model.user_factors_, np.float32)[rng.choice(len(model.users_), 400)]
    queries_all = np.column_stack(
        [users, np.zeros(len(users), np.float32), np.ones(len(users), np.float32)]
    ).astype(np.float32)
    del model
    result: dict[str, Any] = {
        "command": " ".join(["python", "tools/bench/ann_index.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "faiss": faiss.__version__,
        "load_before": os.getloadavg()[0],
        "rank": V.shape[1],
        "k": 10,
        "sizes": [],
    }
    empty = np.zeros(0, np.int64)
    for n in [int(x) for x in args.sizes.split(",")]:
        items = _catalogue(V, n, seed=n)
        allowed = np.ones(n, bool)
        n_exact = max(10, min(args.queries, int(args.exact_budget * 1e9 / items.nbytes)))
        queries = queries_all[:n_exact]
        with threadpool_limits(1):
            exact = Scorer(items, allowed)
            truth, ms = _timed(lambda q, s=exact: s.recommend(q, 10, empty)[0], queries)
        row: dict[str, Any] = {
            "items": n,
            "exact": {
                "queries": len(queries),
                "p50_ms": float(np.median(ms)),
                "p99_ms": float(np.percentile(ms, 99)),
                "memory_mb": items.nbytes / 2**20,
            },
        }
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        ann = AnnScorer(items, allowed, nprobe=1)
        faiss.omp_set_num_threads(1)
        row["ann"] = {"nlist": ann.nlist, "build_s": ann.build_seconds,
                      "memory_mb": ann.index_bytes / 2**20, "probes": []}  # fmt: skip
        for nprobe in [int(x) for x in args.nprobe.split(",")]:
            ann.index.nprobe = min(nprobe, ann.nlist)
            got, ms = _timed(lambda q, s=ann: s.recommend(q, 10, empty)[0], queries)
            recall = np.mean(
                [
                    len(set(g.tolist()) & set(t.tolist())) / 10
                    for g, t in zip(got, truth, strict=True)
                ]
            )
            _, ms_more = _timed(lambda q, s=ann: s.recommend(q, 10, empty)[0], queries_all)
            row["ann"]["probes"].append(
                {
                    "nprobe": nprobe,
                    "recall_at_10": float(recall),
                    "p50_ms": float(np.median(ms_more)),
                    "p99_ms": float(np.percentile(ms_more, 99)),
                }
            )
        result["sizes"].append(row)
        print(json.dumps(row), flush=True)
        del items, exact, ann, truth
        gc.collect()
    result["load_after"] = os.getloadavg()[0]
    return result


def figures(data: dict[str, Any]) -> dict[str, str]:
    """The exact-vs-approximate table for the docs."""
    lines = [
        "| items | scoring | build (s) | memory (MB) | p50 per query (ms) | p99 (ms) | recall@10 |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in data["sizes"]:
        e, a = row["exact"], row["ann"]
        lines.append(
            f"| {row['items']:,} | exact | — | {e['memory_mb']:,.0f} | {e['p50_ms']:.2f} "
            f"| {e['p99_ms']:.2f} | 1 |"
        )
        for p in a["probes"]:
            lines.append(
                f"| {row['items']:,} | IVF-Flat, {a['nlist']:,} lists, nprobe {p['nprobe']} "
                f"| {a['build_s']:.1f} | {a['memory_mb']:,.0f} | {p['p50_ms']:.2f} "
                f"| {p['p99_ms']:.2f} | {p['recall_at_10']:.3f} |"
            )
    measured = (
        f"Measured {data['when']} by `{data['command']}` (faiss {data['faiss']}, rank "
        f"{data['rank']}, one thread per query, the index built on 2 threads), 1-minute load "
        f"average {data['load_before']:.1f} before and {data.get('load_after', float('nan')):.1f}"
        " after (2 cores)."
    )
    return {"table": "\n".join([measured, "", *lines])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="26744,1000000,10000000")
    parser.add_argument("--nprobe", default="8,32,128")
    parser.add_argument("--queries", type=int, default=200, help="exact queries per size (cap)")
    parser.add_argument(
        "--exact-budget", type=float, default=100.0, help="GB of item rows read by exact queries"
    )
    parser.add_argument("--json", default=str(JSON))
    parser.add_argument(
        "--append", help="merge the sizes of an earlier run's JSON (another --json) into this one"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.append:  # two bounded runs (the 10M one takes minutes) shown as one table
        data = json.loads(Path(args.json).read_text())
        more = json.loads(Path(args.append).read_text())
        data["sizes"] += more["sizes"]
        data["command"] += f"`, then `{more['command']}"
        data["when"] += f" and {more['when']}"
        data["load_after"] = more["load_after"]
    else:
        data = run(args)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(figures(data)["table"])
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
