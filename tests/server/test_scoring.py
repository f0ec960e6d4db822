"""Sharded exact top-k equals the unsharded one and a plain sort."""

import numpy as np
import pytest

from dmf.server import Scorer, reference_topk, top_k


def test_top_k_breaks_ties_by_lower_code():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0, -np.inf], np.float32)
    codes, got = top_k(scores, np.arange(6), 2)
    assert codes.tolist() == [1, 2] and got.tolist() == [3.0, 3.0]
    codes, _ = top_k(scores, np.arange(6), 10)  # fewer candidates than k; -inf left out
    assert codes.tolist() == [1, 2, 4, 3, 0]


@pytest.mark.parametrize("n_shards", [1, 2, 3, 7])
@pytest.mark.parametrize("ties", [False, True])
def test_sharded_equals_reference(n_shards, ties):
    rng = np.random.default_rng(n_shards)
    items = rng.normal(size=(503, 9)).astype(np.float32)
    if ties:  # many equal scores across shard edges
        items = np.round(items) * 0 + np.repeat(rng.integers(0, 3, (503, 1)), 9, axis=1)
    allowed = rng.random(503) > 0.1
    with Scorer(items, allowed, n_shards) as sharded, Scorer(items, allowed, 1) as whole:
        for _ in range(5):
            user = rng.normal(size=9).astype(np.float32)
            seen = np.sort(rng.choice(503, 40, replace=False))
            for k in (1, 10, 500):
                codes, scores = sharded.recommend(user, k, seen)
                one, one_scores = whole.recommend(user, k, seen)
                blocked = ~allowed
                blocked[seen] = True
                ref, ref_scores = reference_topk(items, user, k, blocked)
                assert codes.tolist() == one.tolist()
                np.testing.assert_array_equal(scores, one_scores)
                if not ties:
                    assert codes.tolist() == ref.tolist()
                np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_candidates():
    rng = np.random.default_rng(0)
    items = rng.normal(size=(50, 4)).astype(np.float32)
    allowed = np.ones(50, bool)
    allowed[3] = False
    with Scorer(items, allowed, 2) as s:
        user = rng.normal(size=4).astype(np.float32)
        codes, _ = s.recommend(user, 10, np.array([5]), candidates=np.array([3, 5, 7, 9, 7]))
        assert sorted(codes.tolist()) == [7, 9]  # not allowed, seen and repeats left out
