"""Durability: kill -9 and restart lose no acknowledged event; snapshots fold the log in."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import dmf
from dmf.server import StateDir
from tests.server.conftest import Server


def _answers(client, users):
    out = {}
    for u in users:
        r = client.get("/recommend", params={"user": u, "k": 8})
        assert r.status_code == 200, r.text
        out[u] = [(x["item"], round(x["score"], 4)) for x in r.json()["items"]]
    return out


def _post_events(url, events):
    with httpx.Client(base_url=url, timeout=30) as c:
        return [c.post("/events", json=e).status_code for e in events]


def test_kill9_restart_snapshot_restart(small, tmp_path):
    model, _, store, csv = small
    state = str(tmp_path / "state")
    items = model.items_.to_numpy()
    rng = np.random.default_rng(0)
    events = [
        {"user": int(u), "items": [int(i) for i in rng.choice(items, 2, replace=False)]}
        for u in [1, 2, 3, 900, 901, 1, 2, 900] * 3
    ]
    users = sorted({e["user"] for e in events})

    a = Server(store, "--state", state, "--interactions", csv)
    with ThreadPoolExecutor(4) as pool:  # concurrent writers
        parts = pool.map(_post_events, [a.url] * 4, [events[j::4] for j in range(4)])
        codes = [c for part in parts for c in part]
    assert codes == [200] * len(events)
    before = _answers(a.client, users)
    assert a.client.get("/health").json()["events"] == len(events)
    a.kill()

    # a write torn by the crash (never acknowledged) is cut off on replay
    log = next(p for p in sorted(os.listdir(state)) if p.startswith("events-"))
    with open(os.path.join(state, log), "ab") as f:
        f.write(b'1234abcd {"seq": 99, "us')

    b = Server(store, "--state", state, "--interactions", csv)
    assert _answers(b.client, users) == before
    assert b.client.get("/health").json()["events"] == len(events)
    snap = b.client.post("/snapshot")
    assert snap.status_code == 200, snap.text
    assert snap.json()["seq"] == len(events)
    # the snapshot is a complete model store; the log segments it covers are gone
    folded = dmf.load(os.path.join(state, snap.json()["snapshot"], "model.zarr"))
    assert {900, 901} <= set(folded.users_)
    logs = [p for p in os.listdir(state) if p.startswith("events-")]
    assert logs == [f"events-{len(events) + 1:012d}.log"]
    r = b.client.post("/events", json={"user": 3, "items": [int(items[0])]})
    assert r.status_code == 200 and r.json()["seq"] == len(events) + 1
    before = _answers(b.client, users)
    b.kill()

    c = Server(store, "--state", state, "--interactions", csv, "--snapshot-every", "2")
    health = c.client.get("/health").json()
    assert health["events"] == len(events) + 1
    assert health["snapshot"]["seq"] == len(events)
    assert _answers(c.client, users) == before
    for j in range(2):
        c.client.post("/events", json={"user": 901, "items": [int(items[j + 5])]})
    # two events since the snapshot at len(events): the second one starts the next
    deadline = time.monotonic() + 60
    while c.client.get("/health").json()["snapshot"]["seq"] < len(events) + 2:
        assert time.monotonic() < deadline, "the periodic snapshot was not written"
        time.sleep(0.05)
    assert c.client.get("/health").json()["snapshot"]["seq"] == len(events) + 2
    c.stop()


def test_state_of_another_model_is_refused(small, tmp_path):
    model, frame, store, _ = small
    state = str(tmp_path / "state")
    StateDir(state).check_owner(model, store)
    other = dmf.ALS(rank=6, max_iter=1, seed=1).fit(dmf.from_pandas(frame))
    with pytest.raises(dmf.StoreError, match="belongs to the model"):
        StateDir(state).check_owner(other, "other.zarr")
