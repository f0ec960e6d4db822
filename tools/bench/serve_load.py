"""Load test of ``dmf serve`` on an ML-20M-shape model, on 127.0.0.1 only, bounded in time.

Makes (once, cached) an implicit ALS model of rank 64 on synthetic data of the
MovieLens 20M shape (138,493 users x 26,744 items, 20M ratings; the store keeps
the training interactions, so every answer leaves the user's items out), starts
``dmf serve`` on it in a subprocess and drives it:

- startup: process start to the first ``/health`` answer, and the server's own
  load-and-replay time, for a first start and a restart;
- ``GET /recommend?user=&k=10`` at 1, 8, 32 and 128 concurrent clients, from
  each load generator: httpx's async client, ``raw`` (a minimal asyncio
  HTTP/1.1 client) and ``wrk`` (one thread, a Lua script picking random users;
  when ``wrk`` is on the PATH): requests/s, p50/p99 latency (client side, so
  queueing counts) and the server's CPU time per request;
- ``POST /events`` (two random items) p50/p99, each followed by a
  ``GET /recommend`` of the same user checking the new items are excluded
  (read-your-writes in the very next request).

Each phase stops after ``--seconds`` or ``--max-requests``, whichever first
(``wrk`` after ``--seconds``). The server and the load generator share the
machine; say so with the figures. The results go to ``docs/_data/serve_load.json``
(``--json``); :func:`figures` renders them for the docs.

Usage::

    nice python tools/bench/serve_load.py [--shards 1] [--seconds 10] [--drivers raw,wrk]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CACHE = "/tmp/dmf-serve-bench/ml20m-ials64-interactions.zarr"
JSON = Path(__file__).resolve().parents[2] / "docs" / "_data" / "serve_load.json"
TARGETS = {"rps_32": 1000.0, "p99_ms_32": 20.0, "events_p99_ms": 20.0, "startup_s": 5.0}
SHAPE = {"n_users": 138_493, "n_items": 26_744, "nnz": 20_000_263}


def make_model(path: str = CACHE, max_iter: int = 3) -> str:
    """The cached ML-20M-shape implicit ALS store (built on first use: about a minute)."""
    import dmf
    from dmf.store import read_interactions

    try:
        if read_interactions(path) is not None:
            return path
    except dmf.StoreError:
        pass
    ratings = dmf.datasets.synthetic(**SHAPE, rank=20, seed=0, timestamps=False)
    model = dmf.ALS(rank=64, implicit=True, max_iter=max_iter, seed=0).fit(ratings)
    model.save(path, overwrite=True)  # with the training interactions
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


_WRK_SCRIPT = """
local ids = {%s}
request = function()
  return wrk.format("GET", "/recommend?user=" .. ids[math.random(#ids)] .. "&k=10")
end
"""


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def _wrk_phase(url: str, users: np.ndarray, clients: int, seconds: float):
    """``wrk`` with one thread and ``clients`` connections: (rps, p50, p99, errors, n)."""
    sample = np.random.default_rng(clients).choice(users, min(len(users), 20_000), replace=False)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(_WRK_SCRIPT % ",".join(str(int(u)) for u in sample))
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency",
             "--timeout", "10s", "-s", f.name, url],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    pct = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)$", out, re.M))
    n = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return rps, _wrk_ms(pct["50"]), _wrk_ms(pct["99"]), errors, n


def _start(store: str, state: str, shards: int) -> tuple[subprocess.Popen, str, float, float]:
    """Start ``dmf serve``: (process, url, seconds to the first /health, server's own seconds)."""
    import httpx

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "dmf", "serve", store, "--port", str(port), "--state", state,
           "--shards", str(shards)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.perf_counter() - t0 > 120:
            raise SystemExit(f"server did not start: {proc.stderr.read()}")
        time.sleep(0.01)
    startup = time.perf_counter() - t0
    ready = re.search(r"ready in ([\d.]+) s", proc.stderr.readline())
    return proc, url, startup, float(ready.group(1)) if ready else float("nan")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


def _cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase once; the result is what :func:`figures` renders."""
    import httpx

    import dmf

    store = make_model()
    model = dmf.load(store)
    users = model.users_.to_numpy()
    items = model.items_.to_numpy()
    del model
    state = tempfile.mkdtemp(prefix="dmf-serve-bench-state-")
    drivers = [d for d in args.drivers.split(",") if d != "wrk" or shutil.which("wrk")]
    result: dict[str, Any] = {
        "command": " ".join(["python", "tools/bench/serve_load.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "load_before": os.getloadavg()[0],
        "model": {"users": len(users), "items": len(items), "rank": 64, "kind": "implicit ALS"},
        "shards": args.shards,
        "targets": TARGETS,
    }
    proc, url, first, first_own = _start(store, state, args.shards)
    _stop(proc)
    proc, url, startup, own = _start(store, state, args.shards)
    result["startup"] = {"first_s": first, "first_server_s": first_own,
                         "restart_s": startup, "restart_server_s": own}  # fmt: skip
    rows = []
    try:
        for driver in drivers:
            for c in [int(x) for x in args.clients.split(",")]:
                cpu0 = _cpu(proc.pid)
                if driver == "wrk":
                    rps, p50, p99, errors, n = _wrk_phase(url, users, c, args.seconds)
                else:
                    rps, p50, p99, errors, n = asyncio.run(
                        _recommend_phase(
                            url, users, c, args.seconds, args.max_requests, driver == "raw"
                        )
                    )
                cpu_ms = (_cpu(proc.pid) - cpu0) / max(n, 1) * 1e3
                rows.append({"driver": driver, "clients": c, "rps": rps, "p50_ms": p50,
                             "p99_ms": p99, "errors": errors, "requests": n,
                             "server_cpu_ms": cpu_ms})  # fmt: skip
                print(f"{driver} clients={c}: {rps:.0f} req/s p50 {p50:.2f} ms p99 {p99:.2f} ms, "
                      f"server CPU {cpu_ms:.3f} ms/request", flush=True)  # fmt: skip
        metrics = httpx.get(url + "/metrics").text
        e50, e99, stale, n_events = asyncio.run(
            _events_phase(url, users, items, args.seconds, min(args.max_requests, 2000))
        )
    finally:
        _stop(proc)
        shutil.rmtree(state, ignore_errors=True)
    result["recommend"] = rows
    wanted = ("dmf_score_batches_total", "dmf_scored_requests_total")
    counts = {
        ln.split()[0]: float(ln.split()[1]) for ln in metrics.splitlines() if ln.startswith(wanted)
    }
    if counts.get("dmf_score_batches_total"):
        result["users_per_batch"] = (
            counts["dmf_scored_requests_total"] / counts["dmf_score_batches_total"]
        )
    result["events"] = {"p50_ms": e50, "p99_ms": e99, "stale": stale, "events": n_events}
    result["load_after"] = os.getloadavg()[0]
    return result


def _best_32(data: dict[str, Any]) -> dict[str, Any] | None:
    """The 32-client row of the leanest load generator measured (wrk, else raw, else httpx)."""
    by = {r["driver"]: r for r in data["recommend"] if r["clients"] == 32}
    return next((by[d] for d in ("wrk", "raw", "httpx") if d in by), None)


def figures(data: dict[str, Any]) -> dict[str, str]:
    """Markdown for the docs: the load table, the startup line, events, the target rows."""
    m, st, ev = data["model"], data["startup"], data["events"]
    table = [
        "| load generator | concurrent clients | requests/s | p50 (ms) | p99 (ms) "
        "| server CPU per request (ms) | requests | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table += [
        f"| {r['driver']} | {r['clients']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
        f"{r['p99_ms']:.2f} | {r['server_cpu_ms']:.3f} | {r['requests']:,} | {r['errors']} |"
        for r in data["recommend"]
    ]
    model = (
        f"Model: {m['kind']} rank {m['rank']}, {m['users']:,} users x {m['items']:,} items "
        f"(synthetic, ML-20M shape, training interactions left out of every answer); server: "
        f"1 process, {data['shards']} shard(s); load generator on the same 2 cores."
    )
    startup = (
        f"Startup (process start to the first /health answer): {st['first_s']:.2f} s the "
        f"first time, {st['restart_s']:.2f} s on a restart; the server's own load-and-ready "
        f"time {st['first_server_s']:.2f} s and {st['restart_server_s']:.2f} s (the rest is "
        "starting Python and importing dmf, Starlette and uvicorn)."
    )
    events = (
        f"POST /events (2 items, fsync'ed): p50 {ev['p50_ms']:.2f} ms, p99 {ev['p99_ms']:.2f} ms "
        f"over {ev['events']:,} events; next GET /recommend still showing an event's items: "
        f"{ev['stale']}."
    )
    best = _best_32(data)
    t = data["targets"]
    rows = []
    if best is not None:
        ok = best["rps"] >= t["rps_32"] and best["p99_ms"] <= t["p99_ms_32"]
        rows.append(
            f"| `{data['command']}` | `dmf serve`, `GET /recommend`, 32 clients ({best['driver']} "
            f"load generator), ML-20M shape implicit ALS rank 64 | {best['rps']:,.0f} req/s, "
            f"p99 {best['p99_ms']:.1f} ms ({'met' if ok else 'not met'}) | "
            f"≥ {t['rps_32']:,.0f} req/s, p99 ≤ {t['p99_ms_32']:.0f} ms |"
        )
    ok = ev["p99_ms"] <= t["events_p99_ms"] and ev["stale"] == 0
    rows.append(
        f"| same | `POST /events`, fsync'ed, then `GET /recommend` of the same user | p99 "
        f"{ev['p99_ms']:.1f} ms; {ev['stale']} of {ev['events']:,} stale "
        f"({'met' if ok else 'not met'}) | p99 ≤ {t['events_p99_ms']:.0f} ms; next request fresh |"
    )
    ok = max(st["first_s"], st["restart_s"]) <= t["startup_s"]
    rows.append(
        f"| same | `dmf serve` start to first `/health` | {st['first_s']:.1f} s first start, "
        f"{st['restart_s']:.1f} s restart ({'met' if ok else 'not met'}) | "
        f"≤ {t['startup_s']:.0f} s |"
    )
    measured = (
        f"Measured {data['when']} by `{data['command']}`, 1-minute load average "
        f"{data['load_before']:.1f} before and {data.get('load_after', float('nan')):.1f} after "
        "(2 cores)."
    )
    batch = data.get("users_per_batch")
    return {
        "table": "\n".join([model, "", measured, "", *table]),
        "startup": startup,
        "events": events,
        "batch": ""
        if batch is None
        else f"Users scored per batch (mean over the GET phases): {batch:.1f}.",
        "targets": "\n".join(["| script | what | result | target |", "|---|---|---:|---|", *rows]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="per phase")
    parser.add_argument("--max-requests", type=int, default=50_000, help="per phase")
    parser.add_argument("--clients", default="1,8,32,128")
    parser.add_argument("--json", default=str(JSON), help="where the results go")
    parser.add_argument(
        "--drivers",
        default="httpx,raw,wrk",
        help="load generators for GET /recommend: httpx's async client, 'raw' (a minimal "
        "asyncio HTTP/1.1 client) and 'wrk' (skipped when wrk is not on the PATH)",
    )
    args = parser.parse_args()
    data = run(args)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    for text in figures(data).values():
        print(text + "\n")
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
