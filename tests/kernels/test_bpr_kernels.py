"""BPR block kernel (dmf.kernels._bpr): against its plain reference; the negatives' draws."""

from __future__ import annotations

import numpy as np
import pytest

from dmf.kernels._bpr import (
    NEGATIVES,
    bpr_block,
    bpr_kernel_for,
    draw_negative,
    reference_bpr,
    sample_triples,
    user_lists,
)
from dmf.kernels._rng import stream_key
from dmf.kernels._sgd import tile_offsets, visit_order, visit_segments


def _block(rng, n_u, n_i, nnz, tile=8):
    pairs = rng.choice(n_u * n_i, nnz, replace=False)
    users, items = (pairs // n_i).astype(np.int32), (pairs % n_i).astype(np.int32)
    order, tiles = tile_offsets(users, items, tile, n_i)
    return np.ascontiguousarray(users[order]), np.ascontiguousarray(items[order]), tiles


@pytest.mark.parametrize(
    ("k", "dtype", "biases", "verify", "col0", "popular"),
    [
        (5, np.float32, True, True, 0, False),  # any rank: plain loops; negatives in the block
        (16, np.float32, True, True, 0, False),  # compiled for the rank: vector dot products
        (8, np.float64, False, False, 0, False),  # unverified draws may hit the positive itself
        (16, np.float32, True, True, 7, False),  # a block inside a larger catalogue
        (16, np.float32, True, True, 7, True),  # negatives in proportion to their counts
    ],
)
def test_kernel_matches_plain_python_reference(k, dtype, biases, verify, col0, popular):
    rng = np.random.default_rng(k + col0)
    n_u, n_i, n_all = 30, 20, 20 + 2 * col0
    users, items, tiles = _block(rng, n_u, n_i, 300)
    # The users' items over the whole catalogue: the block's, shifted, plus some outside.
    extra = rng.choice(n_u * col0, 40, replace=False) if col0 else np.zeros(0, np.int64)
    lu = np.concatenate([users, extra // col0]) if col0 else users
    li = np.concatenate([items + col0, extra % col0]) if col0 else items
    indptr, indices = user_lists(lu, li, n_u)
    cum = np.cumsum(np.bincount(li, minlength=n_all)) if popular else np.zeros(0, np.int64)
    lo, hi = visit_segments(tiles, 123, 16)
    P0 = rng.normal(0, 0.3, (n_u, k)).astype(dtype)
    Qs = rng.normal(0, 0.3, (n_all, k)).astype(dtype)
    bs = rng.normal(0, 0.1, n_all).astype(dtype)
    Q0, b0 = Qs[col0 : col0 + n_i].copy(), bs[col0 : col0 + n_i].copy()
    P, Q, b, stats = P0.copy(), Q0.copy(), b0.copy(), np.zeros(3)
    kernel = bpr_block if k % 8 else bpr_kernel_for(k)
    args = (0.05, 0.01, 0.02, biases)
    kernel(users, items, lo, hi, indptr, indices, np.uint64(99), P, Q, b, Qs, bs, col0,
           *args, verify, cum, stats)  # fmt: skip
    triples = sample_triples(
        users, items, visit_order(lo, hi), indptr, indices, np.uint64(99), n_all, verify, cum
    )
    pairs = sorted(zip(users.tolist(), items.tolist(), strict=True))
    assert sorted(map(tuple, triples[:, :2].tolist())) == pairs
    if col0:
        outside = (triples[:, 2] < col0) | (triples[:, 2] >= col0 + n_i)
        assert 0 < outside.sum() < len(triples)
    Pr, Qr, br = P0.astype(np.float64), Q0.astype(np.float64), b0.astype(np.float64)
    ref = reference_bpr(triples, Pr, Qr, br, Qs.astype(np.float64), bs.astype(np.float64),
                        col0, *args)  # fmt: skip
    np.testing.assert_allclose(P, Pr, atol=1e-5)
    np.testing.assert_allclose(Q, Qr, atol=1e-5)
    np.testing.assert_allclose(b, br, atol=1e-5)
    assert stats[0] == pytest.approx(ref[0], rel=1e-5)
    assert (stats[1], stats[2]) == (ref[1], ref[2])
    if not biases:
        np.testing.assert_array_equal(b, b0)


def test_verified_negatives_are_uniform_over_the_items_left():
    # User 0 has items 1, 2, 5 of 8; user 1 has all of 3; user 2 none of 3.
    indptr, indices = user_lists(np.array([0, 0, 0, 1, 1, 1]), np.array([5, 1, 2, 0, 1, 2]), 3)
    key = np.uint64(stream_key(1, NEGATIVES, 0, 0, 0))
    n = 7000
    zeros = np.zeros(n, np.int32)
    none = np.zeros(0, np.int64)
    seen = sample_triples(zeros, zeros, np.arange(n), indptr, indices, key, 8, True, none)[:, 2]
    counts = np.bincount(seen, minlength=8)
    assert counts[[1, 2, 5]].sum() == 0
    assert ((counts[[0, 3, 4, 6, 7]] - 1400) ** 2 / 1400).sum() < 18.5  # chi-square, p < 0.001
    assert draw_negative(key, indptr, indices, 1, 3, none, True)[1] == -1
    assert 0 <= draw_negative(key, indptr, indices, 2, 3, none, True)[1] < 3
    # A user who has nearly every item: the direct draw after TRIES misses.
    many = np.arange(1000)
    ip, ix = user_lists(np.zeros(999, np.int64), np.delete(many, 637), 1)
    assert {draw_negative(np.uint64(s), ip, ix, 0, 1000, none, True)[1] for s in range(50)} == {637}


def test_popular_negatives_follow_the_counts():
    # Counts 0, 3, 1, 6 (items 0 .. 3); user 0 has item 1, user 1 nothing.
    cum = np.cumsum([0, 3, 1, 6])
    indptr, indices = user_lists(np.array([0]), np.array([1]), 2)
    key = np.uint64(stream_key(2, NEGATIVES, 0, 0, 0))
    n = 7000
    zeros, ones = np.zeros(n, np.int32), np.ones(n, np.int32)
    free = sample_triples(ones, zeros, np.arange(n), indptr, indices, key, 4, False, cum)[:, 2]
    counts = np.bincount(free, minlength=4)
    want = n * np.array([0, 3, 1, 6]) / 10
    assert counts[0] == 0 and ((counts[1:] - want[1:]) ** 2 / want[1:]).sum() < 13.8  # p < 0.001
    # Verified for user 0: item 1 is drawn again, so 2 and 3 come 1 : 6.
    kept = sample_triples(zeros, zeros, np.arange(n), indptr, indices, key, 4, True, cum)[:, 2]
    counts = np.bincount(kept, minlength=4)
    want = n * np.array([0, 0, 1, 6]) / 7
    assert counts[:2].sum() == 0 and ((counts[2:] - want[2:]) ** 2 / want[2:]).sum() < 10.8


def test_skipped_interactions_take_no_step():
    users, items = np.zeros(3, np.int32), np.arange(3, dtype=np.int32)  # one user, every item
    indptr, indices = user_lists(users, items, 1)
    P, Q, b = np.ones((1, 4), np.float32), np.ones((3, 4), np.float32), np.zeros(3, np.float32)
    stats = np.zeros(3)
    bpr_block(users, items, np.array([0]), np.array([3]), indptr, indices, np.uint64(1),
              P, Q, b, Q.copy(), b.copy(), 0, 0.1, 0.0, 0.0, True, True, np.zeros(0, np.int64),
              stats)  # fmt: skip
    assert stats.tolist() == [0.0, 0.0, 3.0] and (P == 1).all() and (Q == 1).all()
