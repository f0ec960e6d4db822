"""Train/test splits of a :class:`~dmf.Ratings`, computed block by block on Dask.

Every split assigns each rating of a row block to train or test inside one task
per block (``split-assign``), then derives the train and test Ratings from the
same blocks (``split-take``): the id maps and row edges are those of the input,
so a code means the same user or item in every part. Randomness comes from a
generator seeded by ``(seed, block index)``: the same seed and the same
blocking give the same split on any scheduler.
"""

from __future__ import annotations

import numbers
from typing import Any

import dask
import numpy as np

from dmf._errors import ParameterError, RatingsError, check_int, check_param
from dmf.data._blocks import RowBlock
from dmf.data._io import to_ratings
from dmf.data._ratings import Ratings, check_ratings
from dmf.engine._compute import key, persist

__all__ = ["by_user", "kfold", "random", "temporal", "unseen_report"]


# ----------------------------------------------------------------- validation
def _check_test_size(test_size: Any) -> float:
    ok = (
        isinstance(test_size, numbers.Real)
        and not isinstance(test_size, bool)
        and 0.0 < float(test_size) < 1.0
    )
    check_param("test_size", test_size, ok, "a number strictly between 0 and 1")
    return float(test_size)


def _check_seed(seed: Any) -> int:
    return check_int("seed", seed, 0, 2**63 - 1)


def _rng(seed: int, block: int) -> np.random.Generator:
    return np.random.default_rng([seed, block])


# --------------------------------------------------------- per-block kernels
def _per_user_take(n_u: np.ndarray, test_size: float | None, k: int | None) -> np.ndarray:
    """Test ratings per user: a share (rounded) or k, always leaving one for training."""
    want = np.rint(n_u * test_size).astype(np.int64) if k is None else np.full_like(n_u, k)
    return np.minimum(want, np.maximum(n_u - 1, 0))


def _rank_in_row(rows: np.ndarray, order: np.ndarray, n_rows: int) -> np.ndarray:
    """For ratings visited in ``order`` (grouped by row), each one's rank within its row."""
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - starts[rows[order]]
    return rank


def _assign_random(block: RowBlock, test_size: float, seed: int, b: int) -> np.ndarray:
    """Exactly ``round(test_size * nnz)`` ratings of the block, uniformly at random."""
    n = block.nnz
    n_test = round(test_size * n)
    labels = np.zeros(n, dtype=np.int8)
    labels[_rng(seed, b).permutation(n)[:n_test]] = 1
    return labels


def _assign_by_user(
    block: RowBlock, test_size: float | None, k: int | None, seed: int, b: int
) -> np.ndarray:
    keys = _rng(seed, b).random(block.nnz)
    order = np.lexsort((keys, block.rows))
    rank = _rank_in_row(block.rows, order, block.n_rows)
    n_u = np.bincount(block.rows, minlength=block.n_rows)
    take = _per_user_take(n_u, test_size, k)
    return (rank < take[block.rows]).astype(np.int8)


def _assign_temporal_user(block: RowBlock, test_size: float) -> np.ndarray:
    """Each user's latest ratings (ties broken by item code) go to test."""
    # Latest first: sort by (row, -ts, -col).
    order = np.lexsort((-block.cols.astype(np.int64), -block.ts, block.rows))
    rank = _rank_in_row(block.rows, order, block.n_rows)
    n_u = np.bincount(block.rows, minlength=block.n_rows)
    take = _per_user_take(n_u, test_size, None)
    return (rank < take[block.rows]).astype(np.int8)


def _assign_kfold(block: RowBlock, k: int, seed: int, b: int) -> np.ndarray:
    """Fold ids 0..k-1, as balanced as possible within the block."""
    n = block.nnz
    labels = np.empty(n, dtype=np.int8)
    labels[_rng(seed, b).permutation(n)] = np.arange(n) % k
    return labels


def _take(block: RowBlock, labels: np.ndarray, label: int, equal: bool) -> RowBlock:
    return block.take(labels == label if equal else labels != label)


def _ts_range(block: RowBlock) -> tuple[int, int]:
    if block.nnz == 0:
        return (np.iinfo(np.int64).max, np.iinfo(np.int64).min)
    return int(block.ts.min()), int(block.ts.max())


def _ts_hist(block: RowBlock, lo: int, hi: int, n_bins: int) -> np.ndarray:
    idx = _ts_bin(block.ts, lo, hi, n_bins)
    return np.bincount(idx, minlength=n_bins).astype(np.int64)


def _ts_bin(ts: np.ndarray, lo: int, hi: int, n_bins: int) -> np.ndarray:
    width = max(1, -(-(hi - lo + 1) // n_bins))
    return ((ts - lo) // width).astype(np.int64)


def _ts_in_bin(block: RowBlock, lo: int, hi: int, n_bins: int, b: int) -> tuple[Any, Any, int]:
    """Distinct times (with counts) in bin ``b``, and the earliest time after that bin."""
    bins = _ts_bin(block.ts, lo, hi, n_bins)
    vals, counts = np.unique(block.ts[bins == b], return_counts=True)
    later = block.ts[bins > b]
    return vals, counts, int(later.min()) if later.size else np.iinfo(np.int64).max


def _assign_after(block: RowBlock, cut: int) -> np.ndarray:
    return (block.ts >= cut).astype(np.int8)


def _unseen_counts(
    block: RowBlock, train_user_counts: np.ndarray, train_item_counts: np.ndarray
) -> np.ndarray:
    new_u = train_user_counts[block.rows] == 0
    new_i = train_item_counts[block.cols] == 0
    return np.array([new_u.sum(), new_i.sum(), (new_u | new_i).sum()], dtype=np.int64)


# ------------------------------------------------------------------- helpers
def unseen_report(train: Ratings, test: Ratings) -> dict[str, int]:
    """How many test ratings have a user or an item with no training rating.

    ``train`` and ``test`` must share id maps and row edges (as every split and
    ``dmf.datasets.movielens(split=...)`` give). Counted block by block.
    """
    d_items = dask.delayed(train.item_counts, pure=True)
    parts = [
        dask.delayed(_unseen_counts)(
            b, train.user_counts[e0:e1], d_items, dask_key_name=key("split-unseen", b.key, e0)
        )
        for b, e0, e1 in zip(test.blocks, train.row_edges[:-1], train.row_edges[1:], strict=True)
    ]
    counts = np.sum(dask.compute(parts)[0], axis=0) if parts else np.zeros(3, np.int64)
    return {
        "test_ratings": int(test.nnz),
        "unseen_users": int(counts[0]),
        "unseen_items": int(counts[1]),
        "unseen_ratings": int(counts[2]),
        "unseen_user_ids": int(((test.user_counts > 0) & (train.user_counts == 0)).sum()),
        "unseen_item_ids": int(((test.item_counts > 0) & (train.item_counts == 0)).sum()),
    }


def _labels(r: Ratings, func: Any, name: str, *args: Any, per_block_seed: int | None = None):
    out = []
    for b, blk in enumerate(r.blocks):
        extra = (per_block_seed, b) if per_block_seed is not None else ()
        out.append(
            dask.delayed(func)(
                blk, *args, *extra, dask_key_name=key(f"split-assign-{name}", blk.key, args, extra)
            )
        )
    (out,) = persist(out)
    return out


def _parts(
    r: Ratings, labels: list[Any], label: int, info: dict[str, Any]
) -> tuple[Ratings, Ratings]:
    train_blocks = [
        dask.delayed(_take)(
            b, lab, label, False, dask_key_name=key("split-take", lab.key, label, 0)
        )
        for b, lab in zip(r.blocks, labels, strict=True)
    ]
    test_blocks = [
        dask.delayed(_take)(b, lab, label, True, dask_key_name=key("split-take", lab.key, label, 1))
        for b, lab in zip(r.blocks, labels, strict=True)
    ]
    base = {k: v for k, v in r.report.items() if k not in ("part",)}
    train = r.derive(train_blocks, report={**base, **info, "part": "train"})
    test = r.derive(test_blocks, report={**base, **info, "part": "test"})
    test.report.update(unseen_report(train, test))
    return train, test


# ------------------------------------------------------------------- public
def random(r: Ratings, test_size: float = 0.2, seed: int = 0) -> tuple[Ratings, Ratings]:
    """Hold out a random share of all ratings.

    Each row block holds out exactly ``round(test_size * block nnz)`` of its
    ratings, drawn by a generator seeded with ``(seed, block index)``.

    Parameters
    ----------
    r : dmf.Ratings
    test_size : float
        Share of ratings held out, strictly between 0 and 1.
    seed : int
        Seed in ``[0, 2**63 - 1]``; the same seed and blocking give the same split.

    Returns
    -------
    (train, test) : tuple of dmf.Ratings
        Same id maps and row edges as ``r``. ``test.report`` counts test
        ratings whose user or item has no training rating (``unseen_users``,
        ``unseen_items``, ``unseen_ratings``: either).

    Examples
    --------
    >>> import dmf
    >>> r = dmf.testing.random_ratings(n_users=50, n_items=30)
    >>> train, test = dmf.split.random(r, test_size=0.25, seed=1)
    >>> train.nnz + test.nnz == r.nnz, (train.users == test.users).all()
    (True, np.True_)
    """
    r = check_ratings(to_ratings(r, name="ratings"))
    test_size = _check_test_size(test_size)
    seed = _check_seed(seed)
    labels = _labels(r, _assign_random, "random", test_size, per_block_seed=seed)
    return _parts(r, labels, 1, {"split": "random", "test_size": test_size, "seed": seed})


def by_user(
    r: Ratings, test_size: float = 0.2, seed: int = 0, leave_k_out: int | None = None
) -> tuple[Ratings, Ratings]:
    """Hold out a share (or ``leave_k_out`` ratings) of every user's ratings, at random.

    Each user keeps at least one training rating: a user with ``n`` ratings
    gives ``min(round(test_size * n), n - 1)`` (or ``min(k, n - 1)``) to test.
    So no test user is unseen in training; items can be.

    Parameters
    ----------
    r : dmf.Ratings
    test_size : float
        Share of each user's ratings held out, in (0, 1). Ignored when
        ``leave_k_out`` is given.
    seed : int
        Seed in ``[0, 2**63 - 1]`` (generator per row block: ``(seed, block index)``).
    leave_k_out : int, optional
        Hold out exactly this many ratings per user (>= 1).

    Returns
    -------
    (train, test) : tuple of dmf.Ratings

    Examples
    --------
    >>> import dmf
    >>> r = dmf.testing.random_ratings(n_users=50, n_items=30)
    >>> train, test = dmf.split.by_user(r, leave_k_out=1, seed=0)
    >>> test.nnz, test.report["unseen_users"]
    (50, 0)
    """
    r = check_ratings(to_ratings(r, name="ratings"))
    seed = _check_seed(seed)
    if leave_k_out is None:
        test_size = _check_test_size(test_size)
        info: dict[str, Any] = {"split": "by_user", "test_size": test_size, "seed": seed}
        k = None
    else:
        k = check_int("leave_k_out", leave_k_out, 1)
        test_size = None
        info = {"split": "by_user", "leave_k_out": k, "seed": seed}
    labels = _labels(r, _assign_by_user, "by-user", test_size, k, per_block_seed=seed)
    return _parts(r, labels, 1, info)


def temporal(r: Ratings, test_size: float = 0.2, per_user: bool = True) -> tuple[Ratings, Ratings]:
    """Hold out the latest ratings, per user or at one global cut time.

    Parameters
    ----------
    r : dmf.Ratings
        Must have timestamps (built with ``timestamp=``; MovieLens has them).
    test_size : float
        Share held out, in (0, 1).
    per_user : bool
        ``True``: each user's latest ``min(round(test_size * n), n - 1)``
        ratings (ties in time broken by item code, later codes first).
        ``False``: every rating at or after one cut time, the time that makes
        the test share closest to ``test_size`` (ratings sharing the cut time
        all go to test); users who only rated after it are unseen in train.

    Returns
    -------
    (train, test) : tuple of dmf.Ratings

    Raises
    ------
    dmf.RatingsError
        ``r`` has no timestamps.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> df = pd.DataFrame({"user": [1, 1, 1, 2, 2], "item": [1, 2, 3, 1, 2],
    ...                    "rating": [1.0, 2, 3, 4, 5], "ts": [10, 30, 20, 5, 6]})
    >>> r = dmf.from_pandas(df, timestamp="ts")
    >>> train, test = dmf.split.temporal(r, test_size=0.4)
    >>> test.to_pandas()[["user", "item"]].values.tolist()
    [[1, 2], [2, 2]]
    """
    r = check_ratings(to_ratings(r, name="ratings"))
    test_size = _check_test_size(test_size)
    if not isinstance(per_user, (bool, np.bool_)):
        raise ParameterError(
            f"per_user={per_user!r} is not allowed: per_user must be True or False"
        )
    if not r.has_timestamps:
        raise RatingsError(
            "temporal split needs timestamps, but these ratings have none "
            f"({r.nnz} ratings); build them with timestamp='<column>'"
        )
    info = {"split": "temporal", "test_size": test_size, "per_user": bool(per_user)}
    if per_user:
        labels = _labels(r, _assign_temporal_user, "temporal", test_size)
        return _parts(r, labels, 1, info)
    cut = _global_cut(r, test_size)
    info["cut_time"] = cut
    labels = _labels(r, _assign_after, "temporal", cut)
    return _parts(r, labels, 1, info)


def _global_cut(r: Ratings, test_size: float, n_bins: int = 1 << 16) -> int:
    """The time ``t`` for which the count of ratings with ``ts >= t`` is nearest the target.

    Three blocked passes (range, histogram, exact values in the crossing bin),
    so the timestamps are never gathered in one place.
    """
    target = test_size * r.nnz
    ranges = dask.compute([dask.delayed(_ts_range)(b) for b in r.blocks])[0]
    lo = min(x[0] for x in ranges)
    hi = max(x[1] for x in ranges)
    hists = [dask.delayed(_ts_hist)(b, lo, hi, n_bins) for b in r.blocks]
    hist = np.sum(dask.compute(hists)[0], axis=0)
    above = np.cumsum(hist[::-1])[::-1]  # ratings in bins >= j
    j = int(np.searchsorted(-above, -target, side="right")) - 1  # last bin with above >= target
    j = max(j, 0)
    after = int(above[j + 1]) if j + 1 < n_bins else 0
    pieces = dask.compute([dask.delayed(_ts_in_bin)(b, lo, hi, n_bins, j) for b in r.blocks])[0]
    vals = np.concatenate([p[0] for p in pieces])
    cnts = np.concatenate([p[1] for p in pieces])
    uniq, inv = np.unique(vals, return_inverse=True)
    cnt = np.bincount(inv, weights=cnts).astype(np.int64)
    # Candidate cuts: each time in the crossing bin (ratings at or after it: ge),
    # and the first time after the bin (ratings at or after it: after).
    ge = after + np.cumsum(cnt[::-1])[::-1]
    next_time = min(p[2] for p in pieces)
    if after > 0:
        uniq = np.append(uniq, next_time)
        ge = np.append(ge, after)
    m = int(np.argmin(np.abs(ge - target)))
    if ge[m] >= r.nnz:
        raise RatingsError(
            f"no global cut time leaves training ratings: all {r.nnz} ratings share the "
            f"earliest candidate time {int(uniq[m])}; use temporal(per_user=True) or random()"
        )
    return int(uniq[m])


def kfold(r: Ratings, k: int = 5, seed: int = 0) -> list[tuple[Ratings, Ratings]]:
    """``k`` (train, test) pairs whose test parts partition the ratings.

    Each row block deals its ratings into ``k`` folds of equal size (±1) in a
    random order seeded by ``(seed, block index)``; fold ``f``'s test part is
    deal ``f``, its train part the rest.

    Parameters
    ----------
    r : dmf.Ratings
    k : int
        Number of folds, >= 2 (and at most ``r.nnz``).
    seed : int
        Seed in ``[0, 2**63 - 1]``.

    Returns
    -------
    list of (train, test)

    Examples
    --------
    >>> import dmf
    >>> r = dmf.testing.random_ratings(n_users=40, n_items=20)
    >>> folds = dmf.split.kfold(r, k=4, seed=0)
    >>> sum(test.nnz for _, test in folds) == r.nnz
    True
    """
    r = check_ratings(to_ratings(r, name="ratings"))
    k = check_int("k", k, 2, min(r.nnz, 127) if r.nnz >= 2 else 2)
    seed = _check_seed(seed)
    labels = _labels(r, _assign_kfold, "kfold", k, per_block_seed=seed)
    return [
        _parts(r, labels, f, {"split": "kfold", "k": k, "fold": f, "seed": seed}) for f in range(k)
    ]
