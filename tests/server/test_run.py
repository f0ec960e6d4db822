"""Safe defaults: loopback unless a token is given; the token is checked."""

import pytest

import dmf
from dmf.server import is_loopback, serve
from tests.server.conftest import Server


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_non_loopback_needs_a_token(small):
    _, _, store, _ = small
    with pytest.raises(dmf.ParameterError, match="needs --token"):
        serve(store, host="0.0.0.0")
    with pytest.raises(dmf.ParameterError, match="token is empty"):
        serve(store, host="0.0.0.0", token="")
    with pytest.raises(dmf.ParameterError, match="shards"):
        serve(store, shards=0)


def test_bearer_token(small):
    _, _, store, _ = small
    srv = Server(store, token="s3cret")
    try:
        anon = srv.client.__class__(base_url=srv.url, timeout=30)
        assert anon.get("/health").status_code == 200  # liveness and the page stay open
        assert anon.get("/").status_code == 200
        r = anon.get("/recommend", params={"user": 1})
        assert r.status_code == 401 and "bearer token" in r.json()["error"]
        wrong = anon.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert srv.client.get("/recommend", params={"user": 1}).status_code == 200
        r = srv.client.post("/events", json={"user": 1, "items": [1]})
        assert r.status_code == 409 and "--state" in r.json()["error"]
        anon.close()
    finally:
        srv.stop()
