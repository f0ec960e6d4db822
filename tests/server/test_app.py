"""Every endpoint of a real server subprocess, through a real HTTP client."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest


def _expected(model, frame, user, k):
    """``(items, scores)`` ``model`` recommends to ``user``, training items excluded."""
    seen = set(frame.loc[frame["user"] == user, "item"])
    every = model.items_.to_numpy()
    scores = model.predict(np.full(len(every), user), every, clip=False)
    order = sorted(
        (j for j in range(len(every)) if every[j] not in seen), key=lambda j: (-scores[j], j)
    )
    return [int(every[j]) for j in order[:k]], [float(scores[j]) for j in order[:k]]


def _items(resp):
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return [r["item"] for r in body["items"]], [r["score"] for r in body["items"]]


def test_health_openapi_page(server):
    health = server.client.get("/health").json()
    assert health["status"] == "ok" and health["kind"] == "als"
    assert health["users"] == 80 and health["shards"] == 2 and health["training_interactions"]
    spec = server.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/recommend", "/events", "/similar-items", "/metrics", "/health"} <= set(spec["paths"])
    page = server.client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script>" in page.text and "/events" in page.text


def test_recommend_known_user_excludes_training_items(server, small):
    model, frame, _, _ = small
    for user in (0, 5, 41):
        items, scores = _items(server.client.get("/recommend", params={"user": user, "k": 7}))
        want_items, want_scores = _expected(model, frame, user, 7)
        assert items == want_items
        np.testing.assert_allclose(scores, want_scores, atol=1e-5)
        seen = set(frame.loc[frame["user"] == user, "item"])
        assert not seen & set(items)


def test_recommend_candidates_and_exclude_seen(server, small):
    model, frame, _, _ = small
    seen = sorted(frame.loc[frame["user"] == 2, "item"])
    unseen = sorted(set(model.items_) - set(seen))
    cand = [*seen[:3], *unseen[:4]]
    items, _ = _items(
        server.client.get(
            "/recommend", params={"user": 2, "k": 10, "items": ",".join(map(str, cand))}
        )
    )
    assert sorted(items) == sorted(unseen[:4])  # seen candidates excluded, fewer than k
    items, scores = _items(
        server.client.get("/recommend", params={"user": 2, "k": 60, "exclude_seen": "false"})
    )
    every = model.items_.to_numpy()
    want = model.predict(np.full(len(every), 2), every, clip=False)
    assert len(items) == 60 and set(seen) <= set(items)
    np.testing.assert_allclose(scores, sorted(want, reverse=True), atol=1e-5)


def test_anonymous_recommend_is_fold_in(server, small):
    model, _, _, _ = small
    hist = [int(model.items_[3]), int(model.items_[10]), int(model.items_[22])]
    body = {"items": hist, "weights": [5.0, 4.0, 1.0], "k": 5}
    items, scores = _items(server.client.post("/recommend", json=body))
    new = pd.DataFrame({"user": 10_000, "item": hist, "rating": [5.0, 4.0, 1.0]})
    ref = model.fold_in(new)
    every = model.items_.to_numpy()
    want = ref.predict(np.full(len(every), 10_000), every, clip=False)
    order = [j for j in np.lexsort((np.arange(len(every)), -want)) if every[j] not in hist][:5]
    assert items == [int(every[j]) for j in order]
    np.testing.assert_allclose(scores, want[order], atol=1e-5)


def test_events_read_your_writes(server, small):
    model, frame, _, _ = small
    user = 7
    train = frame[frame["user"] == user]
    before, _ = _items(server.client.get("/recommend", params={"user": user, "k": 5}))
    new_items = before[:2]
    r = server.client.post("/events", json={"user": user, "items": new_items, "weights": [5, 4.5]})
    assert r.status_code == 200, r.text
    assert r.json()["history"] == len(train) + 2
    after, scores = _items(server.client.get("/recommend", params={"user": user, "k": 5}))
    assert not set(new_items) & set(after)  # the very next request excludes them
    full = pd.concat([train, pd.DataFrame({"user": user, "item": new_items, "rating": [5.0, 4.5]})])
    ref = model.fold_in(full)  # the user's whole history against the fixed items
    every = model.items_.to_numpy()
    want = ref.predict(np.full(len(every), user), every, clip=False)
    seen = set(full["item"])
    order = [j for j in np.lexsort((np.arange(len(every)), -want)) if every[j] not in seen][:5]
    assert after == [int(every[j]) for j in order]
    np.testing.assert_allclose(scores, want[order], atol=1e-5)
    # a repeated item takes the new weight; the history does not grow
    r = server.client.post("/events", json={"user": user, "items": [new_items[0]], "weights": [1]})
    assert r.json()["history"] == len(train) + 2


def test_events_new_user(server, small):
    model, _, _, _ = small
    assert server.client.get("/recommend", params={"user": 5555}).status_code == 404
    first = int(model.items_[0])
    r = server.client.post("/events", json={"user": 5555, "items": [first]})
    assert r.status_code == 200 and r.json()["history"] == 1
    items, scores = _items(server.client.get("/recommend", params={"user": 5555, "k": 4}))
    assert len(items) == 4 and first not in items
    new = pd.DataFrame({"user": 5555, "item": [first], "rating": [model.rating_scale_[1]]})
    ref = model.fold_in(new)
    np.testing.assert_allclose(scores, ref.predict([5555] * 4, items, clip=False), atol=1e-5)


def test_similar_items(server, small):
    model, _, _, _ = small
    item = int(model.items_[4])
    items, scores = _items(server.client.get("/similar-items", params={"item": item, "k": 6}))
    want = model.similar_items([item], k=6)
    assert items == want["similar_item"].tolist()
    np.testing.assert_allclose(scores, want["score"], atol=1e-5)


def test_popular(server, small):
    model, _, _, _ = small
    items, scores = _items(server.client.get("/popular", params={"k": 3}))
    counts = np.asarray(model.item_counts_)
    order = np.lexsort((np.arange(len(counts)), -counts))[:3]
    assert items == model.items_[order].tolist() and scores == counts[order].tolist()


BAD = [
    ("get", "/recommend", {"params": {"user": 99999}}, 404, "unknown"),
    ("get", "/recommend", {"params": {"user": "abc"}}, 422, "not an integer"),
    ("get", "/recommend", {"params": {}}, 422, "lacks ['user']"),
    ("get", "/recommend", {"params": {"user": 1, "k": 0}}, 422, "k=0"),
    ("get", "/recommend", {"params": {"user": 1, "k": "ten"}}, 422, "k='ten'"),
    ("get", "/recommend", {"params": {"user": 1, "k": 10**6}}, 422, "k=1000000"),
    ("get", "/recommend", {"params": {"user": 1, "kk": 3}}, 422, "unknown field"),
    ("get", "/recommend", {"params": {"user": 1, "items": "1,99999"}}, 422, "never saw"),
    ("get", "/recommend", {"params": {"user": 1, "exclude_seen": "maybe"}}, 422, "exclude_seen"),
    ("post", "/recommend", {"content": b"{not json"}, 400, "malformed JSON"),
    ("post", "/recommend", {"content": b"[1, 2]"}, 422, "JSON object"),
    ("post", "/recommend", {"json": {"items": []}}, 422, "non-empty list"),
    ("post", "/recommend", {"json": {"items": [99999]}}, 422, "never saw"),
    ("post", "/recommend", {"json": {"items": [1, 1]}}, 422, "repeats"),
    ("post", "/recommend", {"json": {"items": [1], "k": -1}}, 422, "k=-1"),
    ("post", "/recommend", {"json": {"items": [1], "k": True}}, 422, "k=True"),
    ("post", "/events", {"json": {"user": 1}}, 422, "lacks ['items']"),
    ("post", "/events", {"json": {"user": 1.5, "items": [1]}}, 422, "not an integer"),
    ("post", "/events", {"json": {"user": 1, "items": ["x"]}}, 422, "not an integer"),
    ("post", "/events", {"json": {"user": 1, "items": [99999]}}, 422, "never saw"),
    ("post", "/events", {"json": {"user": 1, "items": [1], "weights": [1, 2]}}, 422, "weights"),
    ("post", "/events", {"content": b'{"user": 1, "items": [1], "weights": [NaN]}'}, 422, "finite"),
    ("post", "/events", {"json": {"user": 1, "items": [1], "weights": [50]}}, 422, "scale"),
    ("post", "/events", {"json": {"user": 1, "items": [1], "when": 3}}, 422, "unknown field"),
    ("post", "/events", {"content": b"x" * (1 << 20 + 1)}, 413, "exceeds the limit"),
    ("get", "/similar-items", {"params": {"item": 99999}}, 422, "never saw"),
    ("get", "/similar-items", {"params": {"item": 1, "k": 60}}, 422, "k=60"),
    ("get", "/nowhere", {}, 404, "Not Found"),
    ("delete", "/events", {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize(("method", "path", "kw", "status", "words"), BAD)
def test_bad_input_is_a_json_4xx(server, method, path, kw, status, words):
    r = (
        getattr(server.client, method)(path, **kw)
        if method != "delete"
        else server.client.delete(path)
    )
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert server.client.get("/health").status_code == 200  # still serving


def test_streamed_body_over_the_limit(server):
    def chunks():
        for _ in range(20):
            yield b" " * 65536

    r = server.client.post("/events", content=chunks())  # no content-length: chunked
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]


def test_metrics_count_requests(server):
    server.client.get("/recommend", params={"user": 1})
    text = server.client.get("/metrics").text
    assert "# TYPE dmf_requests_total counter" in text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith('dmf_requests_total{method="GET",route="/recommend",status="200"}')
    )
    assert int(line.split()[-1]) >= 1
    buckets = [
        ln
        for ln in text.splitlines()
        if ln.startswith('dmf_request_duration_seconds_bucket{route="/recommend"')
    ]
    counts = [int(b.split()[-1]) for b in buckets]
    assert counts == sorted(counts) and 'le="+Inf"' in buckets[-1]
    assert json.loads(server.client.get("/health").text)["events"] >= 1


def test_concurrent_requests_scored_together_answer_as_alone(server):
    import asyncio

    import httpx

    users = list(range(30))
    alone = {u: _items(server.client.get("/recommend", params={"user": u, "k": 3 + u % 5}))[0]
             for u in users}  # fmt: skip

    async def together():
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            rs = await asyncio.gather(
                *(c.get("/recommend", params={"user": u, "k": 3 + u % 5}) for u in users)
            )
        return {u: _items(r)[0] for u, r in zip(users, rs, strict=True)}

    assert asyncio.run(together()) == alone
