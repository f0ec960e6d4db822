"""``dmf serve STORE`` alone: training interactions and titles come from the store."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from dmf.store import read_interactions, read_titles
from tests.server.conftest import Server


@pytest.fixture(scope="module")
def titled_store(small, tmp_path_factory):
    model, _, _, _ = small
    titles = pd.Series([f"Film {i}" for i in model.items_], index=model.items_)
    path = str(tmp_path_factory.mktemp("extras") / "model.zarr")
    model.save(path, titles=titles)  # the fit's interactions are kept by default
    return path


def _items(r):
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_serve_store_alone_excludes_training_and_shows_titles(small, titled_store, tmp_path):
    model, frame, _, _ = small
    state = str(tmp_path / "state")
    a = Server(titled_store, "--state", state)
    try:
        health = a.client.get("/health").json()
        assert health["training_interactions"] and health["titles"]
        for user in (0, 5, 41):
            got = _items(a.client.get("/recommend", params={"user": user, "k": 10}))
            seen = set(frame.loc[frame["user"] == user, "item"])
            assert not seen & {x["item"] for x in got}
            assert all(x["title"] == f"Film {x['item']}" for x in got)
        # an event is folded in with the user's training history
        train = frame[frame["user"] == 7]
        fresh = [x["item"] for x in _items(a.client.get("/recommend", params={"user": 7, "k": 2}))]
        r = a.client.post("/events", json={"user": 7, "items": fresh})
        assert r.status_code == 200 and r.json()["history"] == len(train) + 2
        before = _items(a.client.get("/recommend", params={"user": 7, "k": 8}))
        snap = a.client.post("/snapshot")
        assert snap.status_code == 200, snap.text
    finally:
        a.kill()
    # the snapshot store keeps the training interactions and titles too
    snapshot = os.path.join(state, snap.json()["snapshot"], "model.zarr")
    indptr, _, _ = read_interactions(snapshot)
    assert indptr[-1] == len(frame)
    assert read_titles(snapshot)[0] == f"Film {model.items_[0]}"
    b = Server(titled_store, "--state", state)
    try:
        assert _items(b.client.get("/recommend", params={"user": 7, "k": 8})) == before
        seen = set(frame.loc[frame["user"] == 3, "item"])
        got = _items(b.client.get("/recommend", params={"user": 3, "k": 10}))
        assert not seen & {x["item"] for x in got}
    finally:
        b.stop()


def test_interactions_option_overrides_the_store(small, titled_store, tmp_path):
    _, frame, _, _ = small
    csv = str(tmp_path / "few.csv")
    few = frame[frame["user"] == 0]
    few.to_csv(csv, index=False)
    srv = Server(titled_store, "--interactions", csv)
    try:
        # user 5's training items are no longer known, so they may be recommended
        got = _items(srv.client.get("/recommend", params={"user": 5, "k": 60}))
        assert set(frame.loc[frame["user"] == 5, "item"]) <= {x["item"] for x in got}
        got = _items(srv.client.get("/recommend", params={"user": 0, "k": 10}))
        assert not set(few["item"]) & {x["item"] for x in got}
    finally:
        srv.stop()
