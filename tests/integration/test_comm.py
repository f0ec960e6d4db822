"""Communication cost of distribution.

Bytes moved between the workers of a real 2-process ``LocalCluster``, read
from each worker's ``transfer_incoming_log`` (distributed's own record of every
worker-to-worker fetch), per ALS iteration and per SGD epoch, compared with the
model of what the algorithm must move:

- ALS: each half-sweep ships the other side's factors (and biases) to every
  worker once, so an iteration moves about ``W * (|U| + |V|)`` bytes
  (``W`` workers, factors plus biases, float32); the persisted rating blocks
  never move.
- DSGD: each ``dsgd-block`` task fetches at most one factor block (its user
  block or its item block; the other stays where the previous stratum left it),
  so an epoch of ``d`` strata x ``d`` blocks moves about ``d * max(|U|, |V|)``
  bytes (padded rank); the rating grid blocks never move.

The assertion is that the measured bytes stay within 2x of the model: a change
that starts shipping rating blocks, or factors once per task, fails here.
``python tests/test_comm.py`` prints the table that docs/performance.md quotes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import numpy as np
import pytest

import dmf
from dmf.testing import local_cluster, random_frame

pytestmark = pytest.mark.timeout(600)

N_USERS, N_ITEMS, DENSITY, RANK = 3000, 1200, 0.04, 32


def _frame() -> Any:
    return random_frame(N_USERS, N_ITEMS, DENSITY, seed=5)


def _incoming(client: Any) -> dict[str, list[dict[str, Any]]]:
    """Each worker's incoming transfer log: bytes per key of every fetch from another worker."""

    def read(dask_worker: Any) -> list[dict[str, Any]]:
        log = dask_worker.transfer_incoming_log
        return [{"keys": dict(e["keys"]), "total": e["total"]} for e in log]

    return client.run(read)


def _prefix(key: Any) -> str:
    name = key[0] if isinstance(key, tuple) else str(key)
    parts = name.split("-")
    # Drop the token and the block numbers: "als-solve-users-<token>" -> "als-solve-users".
    kept = [p for p in parts if not (len(p) >= 16 or p.isdigit())]
    return "-".join(kept) or name


def measure(client: Any, method: str, params: dict[str, Any], ratings: Any) -> dict[str, Any]:
    """Worker-to-worker bytes per iteration (after the first), split by key prefix."""
    est = dmf.METHODS[method](**params)
    marks: list[dict[str, int]] = []
    record = est._record

    def hooked(*args: Any, **kwargs: Any) -> None:
        record(*args, **kwargs)
        marks.append({w: len(e) for w, e in _incoming(client).items()})

    est._record = hooked
    client.run(lambda dask_worker: dask_worker.transfer_incoming_log.clear())
    est.fit(ratings)
    logs = _incoming(client)
    per_iter: list[int] = []
    by_prefix: Counter[str] = Counter()
    # Iteration 1 also builds and places the blocks: steady state is iteration 2 on.
    for a, b in itertools.pairwise(marks):
        chunk = [e for w, log in logs.items() for e in log[a.get(w, 0) : b.get(w, 0)]]
        per_iter.append(sum(e["total"] for e in chunk))
        for e in chunk:
            for k, nbytes in e["keys"].items():
                by_prefix[_prefix(k)] += nbytes
    n = max(len(per_iter), 1)
    return {
        "bytes": float(np.mean(per_iter)) if per_iter else 0.0,
        "by_prefix": {k: v / n for k, v in by_prefix.most_common()},
        "model": est,
    }


def als_model_bytes(model: Any, n_workers: int) -> float:
    f = model.user_factors_.nbytes + model.item_factors_.nbytes
    b = model.user_bias_.nbytes + model.item_bias_.nbytes
    return float(n_workers * (f + b))


def sgd_model_bytes(model: Any) -> float:
    d = int(model.grid_)
    pad = -(-model.user_factors_.shape[1] // 16) * 16
    item_side = model.item_factors_.shape[0] * (pad + 1) * 4
    user_side = model.user_factors_.shape[0] * (pad + 1) * 4
    return float(d * max(item_side, user_side))


@pytest.fixture(scope="module")
def ratings() -> Any:
    return dmf.from_pandas(_frame())


def test_als_iteration_moves_one_copy_of_factors_per_worker(client: Any, ratings: Any) -> None:
    with client.as_current():
        n_workers = len(client.scheduler_info()["workers"])
        out = measure(client, "als", {"rank": RANK, "max_iter": 3, "seed": 0}, ratings)
    model = als_model_bytes(out["model"], n_workers)
    assert out["bytes"] <= 2 * model, (out["bytes"], model, out["by_prefix"])
    # The rating blocks stay where they were persisted.
    moved_ratings = sum(v for k, v in out["by_prefix"].items() if "csr" in k or "block" in k)
    assert moved_ratings <= 0.1 * model, out["by_prefix"]


def test_dsgd_epoch_moves_one_factor_block_per_task(client: Any, ratings: Any) -> None:
    with client.as_current():
        out = measure(client, "sgd", {"rank": RANK, "max_iter": 3, "grid": 2, "seed": 0}, ratings)
    model = sgd_model_bytes(out["model"])
    assert out["bytes"] <= 2 * model, (out["bytes"], model, out["by_prefix"])
    moved_ratings = sum(v for k, v in out["by_prefix"].items() if "grid" in k or "split" in k)
    assert moved_ratings <= 0.1 * model, out["by_prefix"]


def main() -> None:  # pragma: no cover - the table for docs/performance.md
    r = dmf.from_pandas(_frame())
    print(f"data: {N_USERS} users x {N_ITEMS} items, {r.nnz} ratings, rank {RANK}, 2 workers")
    print("| solver | per | measured bytes | model bytes | ratio | biggest keys |")
    print("|---|---|---:|---:|---:|---|")
    with local_cluster(2) as client:
        als = measure(client, "als", {"rank": RANK, "max_iter": 3, "seed": 0}, r)
        model = als_model_bytes(als["model"], 2)
        top = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in list(als["by_prefix"].items())[:3])
        print(
            f"| ALS | iteration | {als['bytes']:,.0f} | {model:,.0f} | "
            f"{als['bytes'] / model:.2f} | {top} |"
        )
        sgd = measure(client, "sgd", {"rank": RANK, "max_iter": 3, "grid": 2, "seed": 0}, r)
        model = sgd_model_bytes(sgd["model"])
        top = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in list(sgd["by_prefix"].items())[:3])
        print(
            f"| DSGD (grid 2) | epoch | {sgd['bytes']:,.0f} | {model:,.0f} | "
            f"{sgd['bytes'] / model:.2f} | {top} |"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
