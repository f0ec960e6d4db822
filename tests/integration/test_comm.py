"""Communication cost of distribution.

Bytes moved between the workers of a real 2-process ``LocalCluster``, read
from each worker's ``transfer_incoming_log`` (distributed's own record of every
worker-to-worker fetch), per ALS iteration and per SGD epoch, compared with the
model of what the algorithm must move; and bytes between the client and the
cluster: what the client sends (its batched stream to the scheduler: graphs)
and what workers send out to anyone but another worker (results gathered for
the client, through the scheduler).

- ALS: the factors live on the workers as row blocks. A routed half-sweep
  moves to each destination block the rows it reads from source blocks on
  other workers; a broadcast one moves each source block to every other
  worker once. ``dmf.models._als_shards.iteration_bytes`` is that model on the
  fit's real block structure and placement; the measured bytes must be within
  1.5x of it, and the client must see only scalars and graph handles.
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

import dask
import numpy as np
import pytest

import dmf
from dmf.testing import local_cluster, random_frame

pytestmark = pytest.mark.timeout(600)

N_USERS, N_ITEMS, DENSITY, RANK = 3000, 1200, 0.04, 32


def _frame() -> Any:
    return random_frame(N_USERS, N_ITEMS, DENSITY, seed=5)


def _outgoing_to_client(client: Any) -> int:
    """Bytes the workers sent to anything but another worker (the scheduler, the client)."""

    def read(dask_worker: Any) -> list[tuple[str, int]]:
        return [(e["who"], e["total"]) for e in dask_worker.transfer_outgoing_log]

    workers = set(client.scheduler_info()["workers"])
    return sum(n for log in client.run(read).values() for who, n in log if who not in workers)


def _client_sent(client: Any) -> int:
    return int(client.scheduler_comm.byte_count)


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
    sent: list[int] = []
    received: list[int] = []
    record = est._record

    def hooked(*args: Any, **kwargs: Any) -> None:
        record(*args, **kwargs)
        marks.append({w: len(e) for w, e in _incoming(client).items()})
        sent.append(_client_sent(client))
        received.append(_outgoing_to_client(client))

    est._record = hooked
    client.run(lambda dask_worker: dask_worker.transfer_incoming_log.clear())
    client.run(lambda dask_worker: dask_worker.transfer_outgoing_log.clear())
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
        "client_sent": float(np.mean(np.diff(sent))) if len(sent) > 1 else 0.0,
        "client_received": float(np.mean(np.diff(received))) if len(received) > 1 else 0.0,
        "by_prefix": {k: v / n for k, v in by_prefix.most_common()},
        "model": est,
    }


def als_model_bytes(model: Any) -> float:
    """The routing model's bytes per iteration for this fit's blocks and placement."""
    from dmf.models._als_shards import PLANS, iteration_bytes

    k, itemsize = model.user_factors_.shape[1], model.user_factors_.dtype.itemsize
    row = (k + (0 if model.implicit else 1)) * itemsize
    return float(iteration_bytes(PLANS[model], row))


def als_factor_bytes(model: Any) -> float:
    """One copy of both sides' factors and biases."""
    f = model.user_factors_.nbytes + model.item_factors_.nbytes
    return float(f + model.user_bias_.nbytes + model.item_bias_.nbytes)


def sgd_model_bytes(model: Any) -> float:
    d = int(model.grid_)
    pad = -(-model.user_factors_.shape[1] // 16) * 16
    item_side = model.item_factors_.shape[0] * (pad + 1) * 4
    user_side = model.user_factors_.shape[0] * (pad + 1) * 4
    return float(d * max(item_side, user_side))


@pytest.fixture(scope="module")
def ratings() -> Any:
    return dmf.from_pandas(_frame())


@pytest.mark.parametrize("routing", ["broadcast", "route"])
def test_als_iteration_moves_what_the_routing_model_says(
    client: Any, ratings: Any, routing: str
) -> None:
    with client.as_current(), dask.config.set({"dmf.als-routing": routing}):
        out = measure(client, "als", {"rank": RANK, "max_iter": 3, "seed": 0}, ratings)
    assert out["model"].routing_ == {"users": routing, "items": routing}
    model = als_model_bytes(out["model"])
    assert model / 1.5 <= out["bytes"] <= 1.5 * model, (out["bytes"], model, out["by_prefix"])
    # The rating blocks stay where they were persisted.
    moved_ratings = sum(v for k, v in out["by_prefix"].items() if "csr" in k or "block" in k)
    assert moved_ratings <= 0.1 * model, out["by_prefix"]
    # The client sends graphs and receives scalars: no factor matrix passes through it.
    factors = als_factor_bytes(out["model"])
    assert out["client_sent"] + out["client_received"] <= 0.1 * factors, out


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
    print(
        "| solver | per | worker-worker bytes | model | ratio | client sent | client received |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    with local_cluster(2) as client:
        for routing in ("broadcast", "route"):
            with dask.config.set({"dmf.als-routing": routing}):
                als = measure(client, "als", {"rank": RANK, "max_iter": 3, "seed": 0}, r)
            model = als_model_bytes(als["model"])
            print(
                f"| ALS ({routing}) | iteration | {als['bytes']:,.0f} | {model:,.0f} | "
                f"{als['bytes'] / model:.2f} | {als['client_sent']:,.0f} | "
                f"{als['client_received']:,.0f} |"
            )
        sgd = measure(client, "sgd", {"rank": RANK, "max_iter": 3, "grid": 2, "seed": 0}, r)
        model = sgd_model_bytes(sgd["model"])
        print(
            f"| DSGD (grid 2) | epoch | {sgd['bytes']:,.0f} | {model:,.0f} | "
            f"{sgd['bytes'] / model:.2f} | {sgd['client_sent']:,.0f} | "
            f"{sgd['client_received']:,.0f} |"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
