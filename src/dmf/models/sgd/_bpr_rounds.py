"""One BPR round of epochs, two ways: lanes of threads in-process, or one Dask graph.

As for SGD (:mod:`dmf.models.sgd._rounds`), both strategies make every
block's pass with the same compiled runner (:func:`dmf.kernels._bpr.bpr_lanes_for`)
in the same order, so they return the same bits; the engine picks one. A
round is ``(spec, start, epochs, lrs) -> (stats, end state)`` with ``stats[e,
i] = (log-loss, correct, skipped)`` of user block ``i`` in epoch ``e``.

Each epoch starts from a snapshot of the whole catalogue's item factors and
biases: the lanes copy it before the epoch's first stratum, the graph
concatenates the item blocks' states in a ``bpr-snapshot`` task that every
``bpr-block`` task of the epoch reads (shipped to each worker once).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from dmf.engine._rounds import run_graph
from dmf.kernels._bpr import bpr_lanes_for, user_lists
from dmf.kernels._sgd import strata_order
from dmf.models.sgd._grid import Grid
from dmf.models.sgd._rounds import _const, _run_lanes

__all__ = ["BPRSpec"]

State = tuple[np.ndarray, ...]


@dataclass(frozen=True, eq=False)
class BPRSpec:
    """What every round of one BPR fit shares.

    ``lists``: the users' items, one pair of arrays per user block
    (:func:`_lists_from_blocks`: values, or persisted Dask objects);
    ``consts = (reg, reg_bias, biases, verify, cum)`` (``cum``: the negatives'
    cumulative counts, empty for uniform draws).
    """

    grid: Grid
    lists: list[Any]
    consts: tuple[float, float, bool, bool, np.ndarray]
    seed: int

    @functools.cached_property
    def joined(self) -> tuple[np.ndarray, np.ndarray]:
        """Every user's items as one pair of arrays (the lanes' layout; lists are values)."""
        indptr = [np.zeros(1, np.int64)]
        for p, _ in self.lists:
            indptr.append(p[1:] + indptr[-1][-1])
        indices = [x for _, x in self.lists]
        return np.concatenate(indptr), np.concatenate(indices) if indices else np.zeros(0, np.int32)


# Tag of the initial factors' numpy stream (the same as SGD's: a BPR fit is its own seed space).
_INIT = 0


# ------------------------------------------------------------ user lists
def _lists_from_blocks(
    row_edges: np.ndarray, col_edges: np.ndarray, first: int, last: int, blocks: list[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Items (catalogue positions, sorted) of the users of user blocks ``first .. last - 1``.

    From the grid blocks of those user blocks; user ``row_edges[first] + r`` is row ``r``.
    """
    r0 = int(row_edges[first])
    n_rows = int(row_edges[last]) - r0
    users = (
        np.concatenate([b.users.astype(np.int64) + int(row_edges[b.i]) - r0 for b in blocks])
        if blocks
        else np.zeros(0, np.int64)
    )
    items = (
        np.concatenate([b.items.astype(np.int64) + int(col_edges[b.j]) for b in blocks])
        if blocks
        else np.zeros(0, np.int64)
    )
    return user_lists(users, items, n_rows)


# --------------------------------------------------------------- Dask tasks
# A user state is ``(P, stats)``: a user block's factors and the (log-loss,
# correct, skipped) its passes met so far this epoch; an item state ``(Q, b_i)``.


def _bpr_block(
    blk: Any,
    lists: tuple[np.ndarray, np.ndarray],
    ustate: tuple[np.ndarray, np.ndarray],
    istate: tuple[np.ndarray, np.ndarray],
    snap: tuple[np.ndarray, np.ndarray],
    col0: int,
    consts: tuple[float, float, bool, bool, np.ndarray],
    lr: float,
    seed: int,
    epoch: int,
    carry: bool,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """One BPR pass over one grid block; returns the new user and item states."""
    # Inputs may be shared (persisted results, kept for reruns): update copies.
    P, Q, bi = ustate[0].copy(), istate[0].copy(), istate[1].copy()
    stats = ustate[1].copy() if carry else np.zeros(3)
    out = stats.reshape(1, 1, 3)
    # The block as the single lane of a 1 x 1 grid: the code the in-process lanes run.
    bpr_lanes_for(P.shape[1])(
        0, 1, seed, np.array([epoch]), np.array([lr]),
        (blk.users, blk.items, np.array([0, blk.nnz])),
        (blk.tiles, np.array([0, len(blk.tiles)])), (np.array([blk.i]), np.array([blk.j])),
        (P, Q, bi), (np.array([0, len(P)]), np.array([0, len(Q)]), np.array([col0])),
        lists, (snap[0], snap[1], False), consts, out, np.zeros(3, np.int64),
    )  # fmt: skip
    return (P, stats), (Q, bi)


def _snapshot(*istates: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The whole catalogue's item factors and biases, from the item blocks' states."""
    return np.concatenate([s[0] for s in istates]), np.concatenate([s[1] for s in istates])


def _dask_round(
    spec: BPRSpec, start: State, epochs: range, lrs: list[float]
) -> tuple[np.ndarray, State]:
    """A round of epochs as one Dask graph from the client's ``start`` state: ``(stats, end)``."""
    grid, lists, consts, seed = spec.grid.blocks, spec.lists, spec.consts, spec.seed
    row_edges, col_edges = spec.grid.row_edges, spec.grid.col_edges
    d = len(grid)
    P, Q, bi = start
    block = dask.delayed(_bpr_block, nout=2, pure=True)
    snapshot = dask.delayed(_snapshot, pure=True)

    def build(attempt: int) -> tuple[list[Any], list[Any], list[Any]]:
        us = [
            _const((P[a:b].copy(), np.zeros(3)), "bpr-users", attempt)
            for a, b in itertools.pairwise(row_edges)
        ]
        its = [
            _const((Q[a:b].copy(), bi[a:b].copy()), "bpr-items", attempt)
            for a, b in itertools.pairwise(col_edges)
        ]
        stats = []
        for e, lr in zip(epochs, lrs, strict=True):
            snap = snapshot(*its, dask_key_name=f"bpr-snapshot-{seed}-{e}-{attempt}")
            for n, s in enumerate(strata_order(seed, e, d)):
                for i in range(d):
                    j = (i + int(s)) % d
                    us[i], its[j] = block(
                        grid[i][j], lists[i], us[i], its[j], snap, int(col_edges[j]), consts,
                        lr, seed, e, n > 0,
                    )  # fmt: skip
            stats.append([u[1] for u in us])
        return stats, [u[0] for u in us], its

    stats, Ps, its = run_graph(build, "BPR")
    Qs, bs = _snapshot(*its)
    return np.array(stats, dtype=np.float64), (np.concatenate(Ps), Qs, bs)


# ------------------------------------------------------------- in process
def _inprocess_round(
    spec: BPRSpec, start: State, epochs: range, lrs: list[float]
) -> tuple[np.ndarray, State]:
    """A round of epochs run by lanes of threads in this process: ``(stats, end state)``.

    The same passes as the round's Dask graph with the same compiled code:
    each block updates its rows of copies of ``start`` in place (the blocks
    of a stratum share no rows), so the result is bit-identical.
    """
    grid, lists, consts, seed = spec.grid.flat, spec.joined, spec.consts, spec.seed
    row_edges, col_edges = spec.grid.row_edges, spec.grid.col_edges
    P, Q, bi = (a.copy() for a in start)
    d = len(grid.blocks)
    stats = np.zeros((len(epochs), d, 3))
    bar = np.zeros(3, dtype=np.int64)
    edges = tuple(np.asarray(e, np.int64) for e in (row_edges, col_edges, col_edges[:-1]))
    lane_args = (
        seed, np.asarray(epochs, dtype=np.int64), np.asarray(lrs, dtype=np.float64),
        grid.data[:2] + grid.data[3:], grid.tiles, (np.arange(d), np.arange(d)),
        (P, Q, bi), edges, lists, (np.empty_like(Q), np.empty_like(bi), True), consts,
        stats, bar,
    )  # fmt: skip
    run_lane = bpr_lanes_for(P.shape[1])

    _run_lanes(run_lane, lane_args, bar, d)
    return stats, (P, Q, bi)
