"""Load test of ``dmf serve`` on an ML-20M-shape model, on 127.0.0.1 only, bounded in time.

Makes (once, cached) an implicit ALS model of rank 64 on synthetic data of the
MovieLens 20M shape (138,493 users x 26,744 items, 20M ratings), starts
``dmf serve`` on it in a subprocess and drives it with httpx's async client:

- startup: process start to the first ``/health`` answer, and the server's own
  load-and-replay time;
- ``GET /recommend?user=&k=10`` at 1, 8, 32 and 128 concurrent clients:
  requests/s and p50/p99 latency (client side, so queueing counts);
- ``POST /events`` (two random items) p50/p99, each followed by a
  ``GET /recommend`` of the same user checking the new items are excluded
  (read-your-writes in the very next request).

Each phase stops after ``--seconds`` or ``--max-requests``, whichever first.
The server and the load generator share the machine; say so with the figures.

Usage::

    nice python tools/bench/serve_load.py [--shards 1] [--seconds 10] [--out table.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

CACHE = "/tmp/dmf-serve-bench/ml20m-ials64.zarr"
SHAPE = {"n_users": 138_493, "n_items": 26_744, "nnz": 20_000_263}


def make_model(path: str = CACHE, max_iter: int = 3) -> str:
    """The cached ML-20M-shape implicit ALS store (built on first use: about a minute)."""
    import dmf

    try:
        dmf.load(path)
        return path
    except dmf.StoreError:
        pass
    ratings = dmf.datasets.synthetic(**SHAPE, rank=20, seed=0, timestamps=False)
    model = dmf.ALS(rank=64, implicit=True, max_iter=max_iter, seed=0).fit(ratings)
    model.save(path, overwrite=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(lat: list[float]) -> tuple[float, float]:
    a = np.asarray(lat) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


class _RawConnection:
    """A minimal HTTP/1.1 keep-alive GET client: a lighter load generator than httpx."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {target} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _recommend_phase(
    url: str, users: np.ndarray, clients: int, seconds: float, cap: int, raw: bool
):
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    lat: list[float] = []
    errors = 0
    rng = np.random.default_rng(clients)
    port = int(url.rsplit(":", 1)[1])
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            conn = _RawConnection(port) if raw else None
            while time.perf_counter() < stop and len(lat) < cap:
                u = int(users[rng.integers(len(users))])
                t = time.perf_counter()
                if conn is not None:
                    status = await conn.get(f"/recommend?user={u}&k=10")
                else:
                    status = (
                        await client.get("/recommend", params={"user": u, "k": 10})
                    ).status_code
                lat.append(time.perf_counter() - t)
                errors += status != 200
            if conn is not None:
                conn.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return len(lat) / elapsed, *_percentiles(lat), errors, len(lat)


async def _events_phase(url: str, users: np.ndarray, items: np.ndarray, seconds: float, cap: int):
    import httpx

    lat: list[float] = []
    stale = 0
    rng = np.random.default_rng(1)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop and len(lat) < cap:
            u = int(users[rng.integers(len(users))])
            # items the user is likely to be recommended, so excluding them is visible
            top = (await client.get("/recommend", params={"user": u, "k": 2})).json()["items"]
            new = [x["item"] for x in top]
            t = time.perf_counter()
            r = await client.post("/events", json={"user": u, "items": new})
            lat.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
            after = (await client.get("/recommend", params={"user": u, "k": 10})).json()["items"]
            stale += bool({x["item"] for x in after} & set(new))
    return (*_percentiles(lat), stale, len(lat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--max-requests", type=int, default=50_000, help="per phase")
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--out", help="also write the markdown table here")
    parser.add_argument(
        "--drivers",
        default="httpx,raw",
        help="load generators for GET /recommend: httpx's async client and/or 'raw', a "
        "minimal asyncio HTTP/1.1 client that leaves more of the shared cores to the server",
    )
    args = parser.parse_args()
    store = make_model()
    import dmf

    model = dmf.load(store)
    users = model.users_.to_numpy()
    items = model.items_.to_numpy()
    del model
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    state = tempfile.mkdtemp(prefix="dmf-serve-bench-state-")
    cmd = [sys.executable, "-m", "dmf", "serve", store, "--port", str(port), "--state", state,
           "--shards", str(args.shards)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    import httpx

    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > 120:
            raise SystemExit(f"server did not start: {proc.stderr.read()}")
        time.sleep(0.02)
    startup = time.perf_counter() - t0
    ready = proc.stderr.readline().strip()
    rows = []
    try:
        for driver in args.drivers.split(","):
            for c in [int(x) for x in args.clients.split(",")]:
                rps, p50, p99, errors, n = asyncio.run(
                    _recommend_phase(
                        url, users, c, args.seconds, args.max_requests, driver == "raw"
                    )
                )
                rows.append((driver, c, rps, p50, p99, errors, n))
                print(f"{driver} clients={c}: {rps:.0f} req/s p50 {p50:.2f} ms p99 {p99:.2f} ms",
                      flush=True)  # fmt: skip
        metrics = httpx.get(url + "/metrics").text
        e50, e99, stale, n_events = asyncio.run(
            _events_phase(url, users, items, args.seconds, min(args.max_requests, 2000))
        )
    finally:
        proc.terminate()
        proc.wait(30)
    lines = [
        f"Model: implicit ALS rank 64, {len(users):,} users x {len(items):,} items "
        f"(synthetic, ML-20M shape); server: 1 process, {args.shards} shard(s); "
        f"load generators on the same machine ({os.cpu_count()} cores).",
        "",
        f"Startup (process start to first /health answer): {startup:.2f} s; server log: {ready}",
        "",
        "| load generator | concurrent clients | requests/s | p50 (ms) | p99 (ms) | requests "
        "| errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {d} | {c} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {n:,} | {e} |"
              for d, c, rps, p50, p99, e, n in rows]  # fmt: skip
    wanted = ("dmf_score_batches_total", "dmf_scored_requests_total")
    batches = {
        ln.split()[0]: float(ln.split()[1]) for ln in metrics.splitlines() if ln.startswith(wanted)
    }
    if batches.get("dmf_score_batches_total"):
        mean = batches["dmf_scored_requests_total"] / batches["dmf_score_batches_total"]
        lines += ["", f"Users scored per batch (mean over the GET phases): {mean:.1f}."]
    lines += [
        "",
        f"POST /events (2 items, fsync'ed): p50 {e50:.2f} ms, p99 {e99:.2f} ms over "
        f"{n_events} events; next GET /recommend still showing an event's items: {stale}.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
