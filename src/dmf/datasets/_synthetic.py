"""A synthetic ratings generator: power-law users and items, a low-rank truth, half stars.

Generation is split in two so the output does not depend on how it is blocked:

1. global, small arrays from ``SeedSequence([seed, 0])``, drawn by one
   ``synthetic-globals`` task (the client draws the counts as well, to fix the
   block edges): each user's number of
   ratings (power-law activity, exactly ``nnz`` in total, at most half the
   catalogue per user), item popularity (power law over a random permutation
   of the items), item biases and item factors;
2. per *generation chunk* (contiguous users holding about 500 000 ratings; the
   chunks depend only on the data set's shape and seed, never on
   ``chunk_nnz``), one ``synthetic-generate`` task seeded by
   ``(seed, 1, chunk id)`` draws the users' biases and factors, their distinct
   items, noise and timestamps.

Row blocks (``synthetic-block`` tasks, edges balanced by nnz from
``chunk_nnz``) are then cut from the generation chunks directly as
:class:`~dmf.data._blocks.RowBlock` arrays: no pandas, and the full data set never
exists as one array.
"""

from __future__ import annotations

import itertools
from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf._errors import check_float, check_int, check_param
from dmf.data._blocks import RowBlock, balanced_edges
from dmf.data._ratings import Ratings, default_n_blocks
from dmf.engine._compute import key, persist
from dmf.kernels._synthetic import rating_values, sample_items

__all__ = ["synthetic"]

#: Ratings per generation chunk (fixes the chunks' user ranges).
_GEN_NNZ = 500_000
_MEAN = 3.5
_USER_BIAS_SD = 0.4
_ITEM_BIAS_SD = 0.5
_SIGNAL_SD = 0.8
_USER_ALPHA = 1.3  # Pareto tail of user activity
_ITEM_ZIPF = 0.9  # popularity ~ (rank + 10) ** -0.9
_T0 = 946_684_800  # 2000-01-01 UTC
_T1 = 1_420_070_400  # 2015-01-01 UTC
_DAY = 86_400


def _user_counts(rng: np.random.Generator, n_users: int, n_items: int, nnz: int) -> np.ndarray:
    """Power-law counts in ``[lo, cap]`` summing to exactly ``nnz``."""
    w = 1.0 + rng.pareto(_USER_ALPHA, n_users)
    cap = max(1, n_items // 2)
    lo = max(1, min(20, nnz // n_users // 4))
    lo_c, hi_c = 0.0, float(nnz) / w.min() + 1.0
    for _ in range(100):  # total(c) = sum(clip(c * w, lo, cap)) is monotone in c
        mid = 0.5 * (lo_c + hi_c)
        if np.clip(mid * w, lo, cap).sum() < nnz:
            lo_c = mid
        else:
            hi_c = mid
    x = np.clip(hi_c * w, lo, cap)
    n = np.floor(x).astype(np.int64)
    frac = x - n
    rem = nnz - int(n.sum())
    if rem > 0:
        room = np.flatnonzero(n < cap)
        pick = room[np.argsort(-frac[room], kind="stable")[:rem]]
        n[pick] += 1
    elif rem < 0:
        room = np.flatnonzero(n > lo)
        pick = room[np.argsort(frac[room], kind="stable")[:-rem]]
        n[pick] -= 1
    return n


def _item_cdf(rng: np.random.Generator, n_items: int) -> np.ndarray:
    weights = (np.arange(n_items, dtype=np.float64) + 10.0) ** -_ITEM_ZIPF
    weights = weights[rng.permutation(n_items)]
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return cdf


def _globals(seed: int, n_users: int, n_items: int, nnz: int, rank: int) -> dict[str, Any]:
    """The global arrays (step 1 of the module docstring), drawn in one task."""
    grng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    counts = _user_counts(grng, n_users, n_items, nnz)
    return {
        "counts": counts,
        "cdf": _item_cdf(grng, n_items),
        "item_bias": grng.normal(0.0, _ITEM_BIAS_SD, n_items),
        "item_factors": grng.normal(0.0, _SIGNAL_SD / np.sqrt(rank), (n_items, rank)),
    }


def _generate(
    g: int,
    start: int,
    stop: int,
    n_items: int,
    glob: dict[str, Any],
    seed: int,
    rank: int,
    noise: float,
    timestamps: bool,
) -> RowBlock:
    """Users ``start <= u < stop`` (generation chunk ``g``) as one RowBlock."""
    ss = np.random.SeedSequence([seed, 1, g])
    rng = np.random.default_rng(ss)
    n_rows = stop - start
    counts = glob["counts"][start:stop]
    user_bias = rng.normal(0.0, _USER_BIAS_SD, n_rows)
    user_factors = rng.normal(0.0, _SIGNAL_SD / np.sqrt(rank), (n_rows, rank))
    seed32 = int(ss.generate_state(1, dtype=np.uint32)[0] & 0x7FFFFFFF)
    cols = sample_items(counts, glob["cdf"], seed32)
    rows = np.repeat(np.arange(n_rows, dtype=np.int32), counts)
    eps = rng.normal(0.0, noise, len(cols)) if noise > 0 else np.zeros(len(cols))
    data = rating_values(
        rows, cols, _MEAN, user_bias, glob["item_bias"], user_factors, glob["item_factors"], eps
    )
    ts = None
    if timestamps:
        first = rng.integers(_T0, _T1, n_rows)
        span = np.minimum(rng.exponential(365.0 * _DAY, n_rows), _T1 - first).astype(np.int64)
        ts = first[rows] + (rng.random(len(cols)) * span[rows]).astype(np.int64)
    return RowBlock(start, stop, n_items, rows, cols, data, ts)


def _assemble(start: int, stop: int, *chunks: RowBlock) -> RowBlock:
    """Row block ``[start, stop)`` cut from the generation chunks that overlap it."""
    rows, cols, data, ts = [], [], [], []
    for c in chunks:
        a, b = max(start, c.start), min(stop, c.stop)
        lo, hi = np.searchsorted(c.rows, [a - c.start, b - c.start])
        rows.append(c.rows[lo:hi] + np.int32(c.start - start))
        cols.append(c.cols[lo:hi])
        data.append(c.data[lo:hi])
        if c.ts is not None:
            ts.append(c.ts[lo:hi])
    n_items = chunks[0].n_items
    return RowBlock(
        start,
        stop,
        n_items,
        np.concatenate(rows).astype(np.int32),
        np.concatenate(cols),
        np.concatenate(data),
        np.concatenate(ts) if ts else None,
    )


def synthetic(
    n_users: int = 1_000,
    n_items: int = 1_700,
    nnz: int = 100_000,
    rank: int = 20,
    seed: int = 0,
    noise: float = 0.5,
    chunk_nnz: int | None = None,
    *,
    timestamps: bool = True,
) -> Ratings:
    r"""Synthetic explicit ratings with a known low-rank structure.

    Each user gets a number of ratings drawn from a power law (Pareto tail;
    at least ``min(20, nnz / n_users / 4)`` each, at most half the catalogue,
    exactly ``nnz`` in total); each picks that many *distinct* items with
    probability following a Zipf-like popularity law. The rating is

    .. math::

        r_{ui} = \mathrm{clip}_{[1, 5]}\big(\mathrm{round}_{1/2}(
            3.5 + b_u + b_i + U_u \cdot V_i + \varepsilon_{ui})\big)

    with :math:`b_u \sim N(0, 0.4^2)`, :math:`b_i \sim N(0, 0.5^2)`, factor
    entries :math:`N(0, 0.8^2/\mathrm{rank})` (so :math:`U_u \cdot V_i` has
    standard deviation about 0.8) and :math:`\varepsilon \sim N(0,
    \mathrm{noise}^2)`. Timestamps (seconds, 2000–2014) follow each user's own
    active period.

    The result depends only on the shape, ``rank``, ``seed``, ``noise`` and
    ``timestamps``, never on ``chunk_nnz`` or the scheduler: the data are
    drawn in fixed generation chunks of users, each seeded by
    ``(seed, chunk id)``, and row blocks are cut from them.

    Parameters
    ----------
    n_users, n_items : int
        Matrix shape (>= 1). Every user has ratings; rarely drawn items may
        have none.
    nnz : int
        Number of ratings, ``n_users <= nnz <= n_users * (n_items // 2)``.
    rank : int
        Rank of the true signal (>= 1).
    seed : int
        Seed in ``[0, 2**63 - 1]``.
    noise : float
        Standard deviation of the Gaussian noise (>= 0).
    chunk_nnz : int, optional
        Target ratings per row block (as in :func:`dmf.from_pandas`).
    timestamps : bool
        Generate timestamps (needed by :func:`dmf.split.temporal`).

    Returns
    -------
    dmf.Ratings
        User and item ids are ``0 .. n-1``; ``rating_scale`` is ``(1, 5)``.

    Examples
    --------
    >>> import dmf
    >>> r = dmf.datasets.synthetic(n_users=500, n_items=300, nnz=20_000, seed=0)
    >>> r.shape, r.nnz
    ((500, 300), 20000)
    >>> r2 = dmf.datasets.synthetic(n_users=500, n_items=300, nnz=20_000, seed=0,
    ...                             chunk_nnz=3_000)
    >>> bool((r.to_scipy() != r2.to_scipy()).nnz == 0)
    True
    """
    n_users = check_int("n_users", n_users, 1)
    n_items = check_int("n_items", n_items, 1)
    rank = check_int("rank", rank, 1)
    seed = check_int("seed", seed, 0, 2**63 - 1)
    noise = check_float("noise", noise, 0.0)
    limit = n_users * max(1, n_items // 2)
    nnz = check_int("nnz", nnz, n_users, limit)
    check_param(
        "chunk_nnz",
        chunk_nnz,
        chunk_nnz is None or (isinstance(chunk_nnz, int) and chunk_nnz > 0),
        "None or a positive integer",
    )
    if not isinstance(timestamps, bool):
        check_param("timestamps", timestamps, False, "True or False")

    # The counts fix the block edges, so this process draws them too (the same first
    # draws of the same generator); the arrays themselves are drawn by a task, so
    # no graph carries them to the workers.
    counts = _user_counts(
        np.random.default_rng(np.random.SeedSequence([seed, 0])), n_users, n_items, nnz
    )
    token = key("", n_users, n_items, nnz, rank, seed, noise, timestamps)
    d_glob = dask.delayed(_globals)(
        seed, n_users, n_items, nnz, rank, dask_key_name=f"synthetic-globals{token}"
    )
    gen_edges = balanced_edges(counts, max(1, -(-nnz // _GEN_NNZ)))
    gens = [
        dask.delayed(_generate)(
            g,
            int(a),
            int(b),
            n_items,
            d_glob,
            seed,
            rank,
            noise,
            timestamps,
            dask_key_name=f"synthetic-generate{token}-{g}",
        )
        for g, (a, b) in enumerate(itertools.pairwise(gen_edges))
    ]
    row_edges = balanced_edges(counts, default_n_blocks(nnz, chunk_nnz, int(counts.max())))
    blocks = []
    for k, (a, b) in enumerate(itertools.pairwise(row_edges)):
        lo = int(np.searchsorted(gen_edges, a, side="right")) - 1
        hi = int(np.searchsorted(gen_edges, b, side="left"))
        blocks.append(
            dask.delayed(_assemble)(
                int(a),
                int(b),
                *gens[lo:hi],
                dask_key_name=key("synthetic-block", token, row_edges, k),
            )
        )
    (blocks,) = persist(blocks)
    report = {
        "source": "synthetic",
        "params": {
            "n_users": n_users,
            "n_items": n_items,
            "nnz": nnz,
            "rank": rank,
            "seed": seed,
            "noise": noise,
        },
    }
    return Ratings(
        blocks,
        row_edges,
        pd.Index(np.arange(n_users, dtype=np.int64), name="user"),
        pd.Index(np.arange(n_items, dtype=np.int64), name="item"),
        has_timestamps=timestamps,
        rating_scale=(1.0, 5.0),
        implicit=False,
        report=report,
    )
