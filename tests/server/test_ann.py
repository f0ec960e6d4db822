"""The approximate index: exact when every list is probed, and served by ``--index ann``."""

from __future__ import annotations

import numpy as np
import pytest

from dmf.server import Scorer
from tests.server.conftest import Server

faiss = pytest.importorskip("faiss", reason="the 'ann' extra (faiss-cpu) is not installed")

from dmf.server._ann import AnnScorer, default_nlist  # noqa: E402


def test_every_list_probed_is_the_exact_answer():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(3000, 10)).astype(np.float32)
    allowed = rng.random(3000) > 0.1
    ann = AnnScorer(items, allowed, nlist=20, nprobe=20)
    exact = Scorer(items, allowed)
    users = rng.normal(size=(6, 10)).astype(np.float32)
    seens = [np.sort(rng.choice(3000, n, replace=False)) for n in (0, 1, 5, 40, 200, 3)]
    for (ca, sa), (ce, se) in zip(
        ann.recommend_many(users, 12, seens), exact.recommend_many(users, 12, seens), strict=True
    ):
        assert ca.tolist() == ce.tolist()
        np.testing.assert_allclose(sa, se, rtol=1e-5)
    assert set(ann.recommend(users[0], 5, seens[4])[0]).isdisjoint(seens[4])


def test_fewer_lists_probed_misses_some_but_scores_stay_exact():
    rng = np.random.default_rng(1)
    items = rng.normal(size=(4000, 8)).astype(np.float32)
    ann = AnnScorer(items, np.ones(4000, bool), nlist=default_nlist(4000), nprobe=1)
    user = rng.normal(size=8).astype(np.float32)
    codes, scores = ann.recommend(user, 10, np.zeros(0, np.int64))
    np.testing.assert_allclose(scores, items[codes] @ user, rtol=1e-5)
    assert (np.diff(scores) <= 0).all()


def test_serve_with_the_approximate_index(small, tmp_path):
    _, frame, store, _ = small
    exact = Server(store)
    ann = Server(store, "--index", "ann", "--nprobe", "1000")  # every list: the exact answer
    try:
        assert ann.client.get("/health").json()["index"] == "ann"
        for user in (0, 9, 33):
            want = exact.client.get("/recommend", params={"user": user, "k": 8}).json()
            got = ann.client.get("/recommend", params={"user": user, "k": 8}).json()
            assert [x["item"] for x in got["items"]] == [x["item"] for x in want["items"]]
            seen = set(frame.loc[frame["user"] == user, "item"])
            assert not seen & {x["item"] for x in got["items"]}
    finally:
        exact.stop()
        ann.stop()
