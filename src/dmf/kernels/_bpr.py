"""BPR kernel: pairwise ranking SGD over one block of interactions (no Dask here).

Bayesian personalised ranking (Rendle, Freudenthaler, Gantner and
Schmidt-Thieme, UAI 2009) learns scores :math:`x_{ui} = p_u \\cdot q_i + b_i`
so that a user's items rank above the items she has not interacted with. One
call makes one pass over one block of a DSGD grid: for each interaction
:math:`(u, i)` of the block, in the pass's visiting order (the segments of
:func:`dmf.kernels._sgd.visit_segments`), it draws a negative item :math:`j`
from the block's own item range and takes one SGD step on
:math:`\\ln \\sigma(x_{uij})`, :math:`x_{uij} = x_{ui} - x_{uj}`:

.. math::

    z &= 1 - \\sigma(x_{uij}) = \\sigma(-x_{uij}) \\\\
    p_u &\\leftarrow p_u + \\eta (z (q_i - q_j) - \\lambda p_u) \\\\
    q_i &\\leftarrow q_i + \\eta (z p_u - \\lambda q_i), \\qquad
    q_j \\leftarrow q_j + \\eta (-z p_u - \\lambda q_j) \\\\
    b_i &\\leftarrow b_i + \\eta (z - \\lambda_b b_i), \\qquad
    b_j \\leftarrow b_j + \\eta (-z - \\lambda_b b_j)

(every update uses the values from before the step). Drawing the negative
inside the block keeps the blocks of a stratum on disjoint rows of ``P`` and
``Q``, so they still run in parallel without locks.

Negatives come from the keyed stream ``(seed, NEGATIVES, epoch, i, j)`` of
the block (:mod:`dmf.kernels._rng`), one draw after the other in the visiting
order. With ``verify`` a draw the user has interacted with (found by binary
search in the block's per-user sorted item lists) is drawn again, up to
:data:`TRIES` times; after that the negative is drawn directly among the items
of the range the user has not interacted with (the same distribution: uniform
over those items), and a user who has interacted with every item of the range
gets no update for that interaction (counted as skipped).

:func:`sample_triples` makes the same draws without training (for tests and
the plain reference :func:`reference_bpr`, which applies the steps over given
triples in float64 Python).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from dmf.kernels._lanes import _barrier
from dmf.kernels._rng import _below, stream_key
from dmf.kernels._sgd import (
    CHUNK,
    CHUNKS,
    _compiled,
    _loop_dot,
    _make_dot,
    _segments,
    n_segments,
    strata_order,
)

__all__ = [
    "NEGATIVES",
    "TRIES",
    "bpr_block",
    "bpr_kernel_for",
    "bpr_lanes_for",
    "reference_bpr",
    "sample_triples",
    "user_lists",
]

#: Tag of the negatives' keyed streams (the SGD shuffles use 1-3).
NEGATIVES = 4
#: Draws of a negative before it is drawn directly among the user's non-items.
TRIES = 8


def user_lists(users: np.ndarray, items: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)``: each local user's items in the block, sorted (int64, int32)."""
    order = np.lexsort((items, users))
    indptr = np.zeros(int(n_rows) + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=int(n_rows)), out=indptr[1:])
    return indptr, np.ascontiguousarray(items[order].astype(np.int32))


@njit(nogil=True, cache=False, inline="always")
def _contains(indices: np.ndarray, a: int, b: int, j: int) -> bool:
    """Whether the sorted ``indices[a:b]`` holds ``j``."""
    while a < b:
        m = (a + b) >> 1
        x = indices[m]
        if x == j:
            return True
        if x < j:
            a = m + 1
        else:
            b = m
    return False


@njit(nogil=True, cache=False, inline="always")
def _pick(state: np.uint64, n_cols: int, cum: np.ndarray) -> tuple[np.uint64, int]:
    """One draw among ``0 .. n_cols - 1``: uniform (``cum`` empty), or item ``j`` with
    probability ``(cum[j] - cum[j - 1]) / cum[-1]`` (``cum``: cumulative interaction counts)."""
    # (_below's draw is a uint64: as int64 it unifies with -1 instead of becoming a float)
    if cum.shape[0] == 0:
        state, r = _below(state, n_cols)
        return state, np.int64(r)
    state, r = _below(state, cum[-1])
    return state, np.int64(np.searchsorted(cum, np.int64(r), side="right"))


@njit(nogil=True, cache=False)
def draw_negative(
    state: np.uint64,
    indptr: np.ndarray,
    indices: np.ndarray,
    u: int,
    n_cols: int,
    cum: np.ndarray,
    verify: bool,
) -> tuple[np.uint64, int]:
    """The stream's next state and a negative for local user ``u`` among ``0 .. n_cols - 1``.

    Drawn as :func:`_pick` does; ``-1`` when ``verify`` and the user has interacted
    with every item of the range.
    """
    if not verify:
        return _pick(state, n_cols, cum)
    a, b = indptr[u], indptr[u + 1]
    free = n_cols - (b - a)
    if free <= 0:
        return state, np.int64(-1)
    for _ in range(TRIES):
        state, r = _pick(state, n_cols, cum)
        if not _contains(indices, a, b, r):
            return state, r
    # Mostly interacted: the r-th of the items left, walking the sorted list.
    state, r = _below(state, free)
    j = np.int64(r)
    for t in range(a, b):
        if indices[t] <= j:
            j += 1
        else:
            break
    return state, j


@njit(nogil=True, cache=False)
def sample_triples(
    users: np.ndarray,
    items: np.ndarray,
    visit: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    key: np.uint64,
    n_cols: int,
    verify: bool,
    cum: np.ndarray,
) -> np.ndarray:
    """``(len(visit), 3)`` int64 ``(u, i, j)`` in the order a pass draws them (``j = -1``: none)."""
    out = np.empty((visit.shape[0], 3), dtype=np.int64)
    state = key
    for n in range(visit.shape[0]):
        t = visit[n]
        u = users[t]
        state, j = draw_negative(state, indptr, indices, u, n_cols, cum, verify)
        out[n, 0], out[n, 1], out[n, 2] = u, items[t], j
    return out


@njit(nogil=True, cache=False, inline="always")
def _log_sigmoid_loss(x: float) -> float:
    """``-ln sigmoid(x) = ln(1 + e^-x)`` without overflow."""
    if x > 0:
        return math.log1p(math.exp(-x))
    return -x + math.log1p(math.exp(x))


def _make_kernel(K: int):
    """The BPR pass, compiled for rank ``K`` as a constant (``K = 0``: any rank)."""
    rowdot = _make_dot(K) if K > 0 and K % 8 == 0 else _loop_dot

    @njit(nogil=True, cache=False, fastmath=True)
    def bpr_pass(
        users: np.ndarray,
        items: np.ndarray,
        seg_lo: np.ndarray,
        seg_hi: np.ndarray,
        indptr: np.ndarray,
        indices: np.ndarray,
        key: np.uint64,
        P: np.ndarray,
        Q: np.ndarray,
        bi: np.ndarray,
        Qs: np.ndarray,
        bs: np.ndarray,
        col0: int,
        lr: float,
        reg: float,
        reg_bias: float,
        biases: bool,
        verify: bool,
        cum: np.ndarray,
        stats: np.ndarray,
    ) -> None:
        k = K if K > 0 else P.shape[1]
        dt = P.dtype.type
        lr_reg_b = dt(lr * reg_bias)
        shrink = dt(1.0 - lr * reg)
        n_cols = Q.shape[0]
        n_all = Qs.shape[0]
        state = key
        loss = 0.0
        correct = 0.0
        skipped = 0.0
        for c in range(seg_lo.shape[0]):
            for t in range(seg_lo[c], seg_hi[c]):
                u = users[t]
                i = items[t]
                state, jg = draw_negative(state, indptr, indices, u, n_all, cum, verify)
                if jg < 0:
                    skipped += 1.0
                    continue
                j = jg - col0
                inside = j >= 0 and j < n_cols
                if inside:
                    x = rowdot(P, Q, u, i) - rowdot(P, Q, u, j)
                    if biases:
                        x += bi[i] - bi[j]
                else:
                    x = rowdot(P, Q, u, i) - rowdot(P, Qs, u, jg)
                    if biases:
                        x += bi[i] - bs[jg]
                xf = np.float64(x)
                loss += _log_sigmoid_loss(xf)
                if xf > 0.0:
                    correct += 1.0
                g = dt(lr / (1.0 + math.exp(xf)))
                if biases:
                    b_i = bi[i]
                    bi[i] = b_i + g - lr_reg_b * b_i
                if inside:
                    if biases:
                        b_j = bi[j]
                        bi[j] = b_j - g - lr_reg_b * b_j
                    for f in range(k):
                        p = P[u, f]
                        qi = Q[i, f]
                        qj = Q[j, f]
                        P[u, f] = shrink * p + g * (qi - qj)
                        Q[i, f] = shrink * qi + g * p
                        Q[j, f] = shrink * qj - g * p
                else:
                    for f in range(k):
                        p = P[u, f]
                        qi = Q[i, f]
                        P[u, f] = shrink * p + g * (qi - Qs[jg, f])
                        Q[i, f] = shrink * qi + g * p
        stats[0] += loss
        stats[1] += correct
        stats[2] += skipped

    return bpr_pass


#: One BPR pass over a block, any rank; updates ``P, Q, bi`` in place and adds
#: ``(log-loss, correct pairs, skipped)`` to ``stats`` (float64, length 3).
bpr_block = _make_kernel(0)


def bpr_kernel_for(rank: int) -> Any:
    """:data:`bpr_block` compiled for one rank (compiled once per process, on first use)."""
    return _compiled("bpr-pass", rank, _make_kernel)


def reference_bpr(
    triples: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    bi: np.ndarray,
    Qs: np.ndarray,
    bs: np.ndarray,
    col0: int,
    lr: float,
    reg: float,
    reg_bias: float,
    biases: bool,
) -> tuple[float, int, int]:
    """Plain-Python float64 BPR steps over ``(u, i, j)`` triples, in order (in place).

    ``u``, ``i`` are rows of the block's ``P``, ``Q``; ``j`` is an item of the
    whole catalogue: a row of ``Q`` (``col0 + row``) when the block holds it,
    else read from the snapshot ``Qs``, ``bs`` and left as it is. Returns
    ``(log-loss, correct pairs, skipped)``: the sum of :math:`-\\ln
    \\sigma(x_{uij})` before each step, how many had :math:`x_{uij} > 0`, and
    how many triples had ``j = -1`` (no step).

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.testing import reference_bpr
    >>> P, Q = np.zeros((1, 2)), np.zeros((2, 2))
    >>> bi = np.zeros(2)
    >>> loss, correct, skipped = reference_bpr(
    ...     np.array([[0, 0, 1]]), P, Q, bi, Q.copy(), bi.copy(), 0, 0.1, 0.0, 0.0, True)
    >>> round(loss, 4), correct, skipped, float(bi[0]), float(bi[1])  # ln 2 at x = 0
    (0.6931, 0, 0, 0.05, -0.05)
    """
    loss, correct, skipped = 0.0, 0, 0
    for u, i, jg in triples.tolist():
        if jg < 0:
            skipped += 1
            continue
        j = jg - col0
        inside = 0 <= j < Q.shape[0]
        pu, qi = [float(x) for x in P[u]], [float(x) for x in Q[i]]
        qj = [float(x) for x in (Q[j] if inside else Qs[jg])]
        x = sum(a * (b - c) for a, b, c in zip(pu, qi, qj, strict=True))
        if biases:
            x += float(bi[i]) - float(bi[j] if inside else bs[jg])
        loss += math.log1p(math.exp(-x)) if x > 0 else -x + math.log1p(math.exp(x))
        correct += x > 0
        z = 1.0 / (1.0 + math.exp(x))
        if biases:
            bi[i] = float(bi[i]) + lr * (z - reg_bias * float(bi[i]))
            if inside:
                bi[j] = float(bi[j]) + lr * (-z - reg_bias * float(bi[j]))
        P[u] = [a + lr * (z * (b - c) - reg * a) for a, b, c in zip(pu, qi, qj, strict=True)]
        Q[i] = [b + lr * (z * a - reg * b) for a, b in zip(pu, qi, strict=True)]
        if inside:
            Q[j] = [c + lr * (-z * a - reg * c) for a, c in zip(pu, qj, strict=True)]
    return loss, correct, skipped


def _make_lanes(K: int):
    """The BPR lane runner for rank ``K`` (see :func:`bpr_lanes_for`)."""
    bpr_pass = bpr_kernel_for(K)

    @njit(nogil=True, cache=False)
    def run_lane(
        lane, n_lanes, seed, epochs, lrs, data, tiles, ids, factors, edges, lists, snap, consts,
        stats, bar,
    ):  # fmt: skip
        users, items, boff = data
        tile_offs, toff = tiles
        row_ids, col_ids = ids
        P, Q, bi = factors
        row_edges, col_edges, col0s = edges
        indptr, indices = lists
        Qs, bs, fill = snap
        reg, reg_bias, biases, verify, cum = consts
        d = row_edges.shape[0] - 1
        for e in range(epochs.shape[0]):
            if fill:
                # Out-of-block negatives read the factors as the epoch found them.
                for j in range(lane, d, n_lanes):
                    q0, q1 = col_edges[j], col_edges[j + 1]
                    Qs[q0:q1] = Q[q0:q1]
                    bs[q0:q1] = bi[q0:q1]
                if not _barrier(bar, n_lanes):
                    return
            strata = strata_order(seed, epochs[e], d)
            for n in range(d):
                for i in range(lane, d, n_lanes):
                    j = (i + strata[n]) % d
                    b = i * d + j
                    a0, a1 = boff[b], boff[b + 1]
                    bt = tile_offs[toff[b] : toff[b + 1]]
                    m = n_segments(bt, CHUNK)
                    lo, hi = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
                    _segments(bt, stream_key(seed, CHUNKS, epochs[e], row_ids[i], col_ids[j]),
                              CHUNK, lo, hi)  # fmt: skip
                    r0, r1, q0, q1 = row_edges[i], row_edges[i + 1], col_edges[j], col_edges[j + 1]
                    key = stream_key(seed, NEGATIVES, epochs[e], row_ids[i], col_ids[j])
                    bpr_pass(
                        users[a0:a1], items[a0:a1], lo, hi, indptr[r0 : r1 + 1], indices, key,
                        P[r0:r1], Q[q0:q1], bi[q0:q1], Qs, bs, col0s[j],
                        lrs[e], reg, reg_bias, biases, verify, cum, stats[e, i],
                    )  # fmt: skip
                if not _barrier(bar, n_lanes):
                    return

    return run_lane


def bpr_lanes_for(rank: int) -> Any:
    """The BPR lane runner for factor rows of ``rank`` values (compiled once per process).

    ``run_lane(lane, n_lanes, seed, epochs, lrs, data, tiles, ids, factors,
    edges, lists, snap, consts, stats, bar)`` runs lane ``lane`` of ``n_lanes``
    over epochs ``epochs[0], ...`` of a ``d x d`` grid as the SGD lanes do
    (:func:`dmf.kernels._lanes.lanes_for`: the same strata, visiting orders and
    barrier), making a BPR pass (:data:`bpr_block`) over each block with the
    negatives of the stream ``(seed, NEGATIVES, e, row_ids[i], col_ids[j])``.

    - ``data = (users, items, boff)``, ``tiles``, ``ids``: as for SGD;
    - ``factors = (P, Q, bi)``, updated in place; ``edges = (row_edges,
      col_edges, col0s)``: the rows of ``P``/``Q`` of each block, and the
      catalogue position of each item block's first item;
    - ``lists = (indptr, indices)``: every user's items (catalogue positions,
      sorted), user ``r`` of ``P`` at ``indices[indptr[r]:indptr[r + 1]]``;
    - ``snap = (Qs, bs, fill)``: the whole catalogue's factors and biases as
      the epoch started; with ``fill`` the lanes copy them from ``Q``, ``bi``
      (which then hold the whole catalogue) before each epoch;
    - ``consts = (reg, reg_bias, biases, verify, cum)``, ``cum`` as for
      :func:`draw_negative` (empty: uniform negatives); ``stats``, float64
      ``(epochs, d, 3)``: user block ``i``'s passes in epoch ``e`` add their
      ``(log-loss, correct, skipped)`` to ``stats[e, i]``, in stratum order.
    """
    return _compiled("bpr-lanes", rank, _make_lanes)
