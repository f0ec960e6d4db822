"""Biased matrix factorisation trained by distributed stratified SGD (DSGD) on Dask.

The training matrix is cut into a ``d x d`` grid of blocks (user blocks
balanced by nnz, item blocks likewise). A *stratum* is ``d`` blocks that share
no user block and no item block: ``(i, (i + s) mod d)`` for ``i = 0..d-1``.
An epoch runs the ``d`` strata in an order reshuffled from the seed each
epoch; the ``d`` blocks of a stratum run as ``d`` parallel ``dsgd-block`` tasks,
each a numba ``nogil`` pass (:mod:`dmf.kernels._sgd`) over the block's ratings
that updates one user-factor block and one item-factor block (Gemulla et al.,
"Large-scale matrix factorization with distributed stochastic gradient
descent", KDD 2011). A round of epochs (up to :data:`ROUND` chained) is
computed and its end state gathered to the client before the next round is
built, so the graph never grows with the number of epochs, and a round whose
work is lost with a killed worker is rebuilt from the client's copy of its
start state and rerun (bit-identical).

Every random draw is keyed by the seed and what it is for, never by where a
task runs: the initial factors come from ``numpy.random.default_rng([seed,
0])``, every shuffle (a block's stored order, an epoch's stratum order, an
epoch's tile and chunk order in a block) from its own keyed stream
(:mod:`dmf.kernels._rng`). The same seed and grid give bit-identical factors
on the threaded scheduler and on a distributed cluster, and a fit resumed
from a checkpoint ends bit-identical to one that was never interrupted.

Small fits on the local scheduler (:data:`dmf.engine._compute.INPROCESS_NNZ`) run each
round in-process as lanes of threads (:func:`_inprocess_round`): the same
blocks, visiting orders and compiled runner, hence the same factors, without
a graph.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from dmf._errors import (
    ConvergenceError,
    DMFWarning,
    ParameterError,
    RatingsError,
    check_choice,
    check_float,
    check_int,
    check_param,
    first_rows,
)
from dmf.data._blocks import RowBlock, balanced_edges
from dmf.data._ratings import Ratings, check_ratings
from dmf.engine._compute import (
    active_client,
    in_process,
    key,
    local_values,
    n_threads,
    persist,
    run_lanes,
    thread_map,
)
from dmf.engine._faults import _client_down
from dmf.evaluation._metrics import evaluate, to_ratings
from dmf.kernels._rng import permutation, stream_key
from dmf.kernels._sgd import (
    SHUFFLE,
    lanes_for,
    penalty_sums,
    strata_order,
    tile_offsets,
    tile_rows,
)
from dmf.models._recommender import Recommender
from dmf.store._checkpoint import load_checkpoint, save_checkpoint

__all__ = ["SGD"]

#: Learning-rate schedules.
LR_SCHEDULES = ("constant", "decay", "bold-driver")
#: Bold driver: factor applied to ``lr`` after an epoch whose loss fell / rose.
BOLD_GROW = 1.05
BOLD_SHRINK = 0.5
#: Most epochs chained into one Dask call when no epoch needs a decision of its own.
ROUND = 8
#: Internal factor rows are padded to a multiple of this many columns (kept exactly 0).
#: Measured at rank 100 on the ML-10M shape with tiled blocks (interleaved runs):
#: 112 columns 0.65-0.75 CPU s per epoch, 100 columns 0.79-1.00 (aligned rows, no
#: remainder loop). It also means one compiled kernel for every rank up to 16.
PAD = 16

# Tag of the initial factors' numpy stream (the shuffles' tags: dmf.kernels._sgd).
_INIT = 0


# --------------------------------------------------------------------- grid
@dataclass(frozen=True, eq=False)
class GridBlock:
    """Ratings of user block ``i`` on item block ``j``, grouped by cache-sized tiles.

    ``users``/``items`` are int32 indices local to the block's user and item
    ranges; ``ratings`` has the factors' dtype. Tile ``t`` holds the ratings
    ``tiles[t]:tiles[t + 1]``, in a seeded shuffled order.
    """

    i: int
    j: int
    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    tiles: np.ndarray

    @property
    def nnz(self) -> int:
        return int(self.ratings.shape[0])


def _split_row_block(
    block: RowBlock, row_edges: np.ndarray, col_edges: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Cut one row block of the ratings into the pieces of every grid cell (``d*d`` triples)."""
    d = len(row_edges) - 1
    users = block.user_codes()
    gi = np.searchsorted(row_edges, users, side="right") - 1
    gj = np.searchsorted(col_edges, block.cols, side="right") - 1
    cell = gi * d + gj
    order = np.argsort(_small_ints(cell, d * d), kind="stable")  # keeps (user, item) order
    bounds = np.searchsorted(cell[order], np.arange(d * d + 1))
    u, i, r = users[order].astype(np.int32), block.cols[order], block.data[order]
    return [(u[a:b], i[a:b], r[a:b]) for a, b in itertools.pairwise(bounds)]


def _small_ints(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` (values below ``n``) as uint16 when they fit: numpy sorts those by radix, O(len)."""
    return a.astype(np.uint16) if n <= 1 << 16 else a


def _merge_cell(
    i: int,
    j: int,
    row0: int,
    col0: int,
    n_cols: int,
    seed: int,
    dtype: str,
    tile: int,
    *pieces: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> GridBlock:
    """One grid block from its pieces: shuffled once from ``(seed, i, j)``, grouped by tile."""
    u = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, np.int32)
    it = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int32)
    r = np.concatenate([p[2] for p in pieces]) if pieces else np.zeros(0, np.float32)
    perm = permutation(stream_key(seed, SHUFFLE, i, j, 0), r.shape[0])
    u, it, r = (u[perm] - row0).astype(np.int32), (it[perm] - col0).astype(np.int32), r[perm]
    order, tiles = tile_offsets(u, it, tile, n_cols)  # stable: shuffled within a tile
    return GridBlock(
        i,
        j,
        np.ascontiguousarray(u[order]),
        np.ascontiguousarray(it[order]),
        np.ascontiguousarray(r[order].astype(dtype)),
        tiles,
    )


def _grid_edges(counts: np.ndarray, d: int) -> np.ndarray:
    """``d + 1`` strictly increasing edges balancing ``counts`` over exactly ``d`` blocks."""
    edges = balanced_edges(counts, d)
    if len(edges) == d + 1:
        return edges
    # A few huge rows made cuts coincide: keep the balanced cuts but force them apart.
    n = len(counts)
    cum = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    targets = cum[-1] * np.arange(1, d) / d
    cuts = np.searchsorted(cum, targets, side="left").astype(np.int64)
    out = np.zeros(d + 1, dtype=np.int64)
    out[d] = n
    for k in range(1, d):
        out[k] = min(max(int(cuts[k - 1]), out[k - 1] + 1), n - (d - k))
    return out


def _build_grid(
    ratings: Ratings,
    row_edges: np.ndarray,
    col_edges: np.ndarray,
    seed: int,
    dtype: str,
    tile: int,
) -> list[list[Any]]:
    """Persisted ``d x d`` nested list of lazy :class:`GridBlock` (``grid[i][j]``).

    ``tile``: users (and items) per cache tile (:func:`dmf.kernels._sgd.tile_rows`).
    """
    d = len(row_edges) - 1
    token = key("", [b.key for b in ratings.blocks], row_edges, col_edges, seed, dtype, tile)
    pieces = [
        dask.delayed(_split_row_block, nout=d * d)(
            b, row_edges, col_edges, dask_key_name=f"dsgd-split{token}-{n}"
        )
        for n, b in enumerate(ratings.blocks)
    ]
    starts, stops = ratings.row_edges[:-1], ratings.row_edges[1:]
    grid = []
    for i in range(d):
        # Only the row blocks overlapping user block i hold pieces of its cells.
        near = [
            p
            for p, a, b in zip(pieces, starts, stops, strict=True)
            if a < row_edges[i + 1] and b > row_edges[i]
        ]
        grid.append(
            [
                dask.delayed(_merge_cell)(
                    i,
                    j,
                    int(row_edges[i]),
                    int(col_edges[j]),
                    int(col_edges[j + 1] - col_edges[j]),
                    seed,
                    dtype,
                    tile,
                    *[p[i * d + j] for p in near],
                    dask_key_name=f"dsgd-grid{token}-{i}-{j}",
                )
                for j in range(d)
            ]
        )
    (grid,) = persist(grid)
    return grid


# -------------------------------------------------------------------- tasks
# A user state is ``(P, b_u, sse)``: a user block's factors and biases, plus the
# squared errors its chain of tasks met so far this epoch. An item state is
# ``(Q, b_i)``. A ``dsgd-block`` task returns ``(user state, item state)``;
# two ``getitem`` tasks hand each half to the next stratum.


def _dsgd_block(
    blk: GridBlock,
    ustate: tuple[np.ndarray, np.ndarray, float],
    istate: tuple[np.ndarray, np.ndarray],
    mu: float,
    lr: float,
    reg: float,
    reg_bias: float,
    biases: bool,
    seed: int,
    epoch: int,
    carry: bool,
) -> tuple[tuple[np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]:
    """One SGD pass over one grid block; returns the new user and item states."""
    # Inputs may be shared (persisted results, kept for restores): update copies.
    P, bu = ustate[0].copy(), ustate[1].copy()
    Q, bi = istate[0].copy(), istate[1].copy()
    sse = np.zeros((1, 1))
    # The block as the single lane of a 1 x 1 grid: the code the in-process lanes run.
    lanes_for(P.shape[1])(
        0, 1, seed, np.array([epoch]), np.array([lr]),
        (blk.users, blk.items, blk.ratings, np.array([0, blk.nnz])),
        (blk.tiles, np.array([0, len(blk.tiles)])), (np.array([blk.i]), np.array([blk.j])),
        (P, Q, bu, bi), (np.array([0, len(P)]), np.array([0, len(Q)])),
        (_NO_COUNTS, _NO_COUNTS), (mu, reg, reg_bias, biases),
        sse, _NO_PENALTIES, np.zeros(3, np.int64),
    )  # fmt: skip
    return (P, bu, float(sse[0, 0]) + (ustate[2] if carry else 0.0)), (Q, bi)


_NO_COUNTS = np.zeros(0)
_NO_PENALTIES = np.zeros((0, 2, 2))


def _strata(seed: int, epoch: int, d: int) -> np.ndarray:
    """The order of one epoch's strata: stratum ``s`` holds blocks ``(i, (i + s) % d)``."""
    return strata_order(seed, epoch, d)


def _penalty(state: tuple[Any, ...], counts: np.ndarray, reg: float, reg_bias: float) -> tuple:
    """``(sse, reg * sum n |p|^2 + reg_bias * sum n b^2)`` of one factor block."""
    sf, sb = penalty_sums(state[0], state[1], counts)
    return (state[2] if len(state) > 2 else 0.0), _weigh(sf, sb, reg, reg_bias)


def _weigh(sf: float, sb: float, reg: float, reg_bias: float) -> float:
    """The penalty of a block from its :func:`penalty_sums`."""
    return float(reg * sf + reg_bias * sb)


def _loss_parts(*parts: tuple[float, float]) -> tuple[float, float]:
    return math.fsum(p[0] for p in parts), math.fsum(p[1] for p in parts)


def _const(obj: Any, prefix: str, *parts: Any) -> Delayed:
    """A lazy handle on a driver-side object, held in the graph itself.

    Not scattered: a value in the graph is recomputed (re-sent) by the
    scheduler when the worker holding it dies, a scattered one is lost.
    """
    return dask.delayed(obj, pure=True, name=key(prefix, obj, *parts))


def _start_states(
    state: tuple[np.ndarray, ...], row_edges: np.ndarray, col_edges: np.ndarray, attempt: int
) -> tuple[list[Delayed], list[Delayed]]:
    """Per-block user and item states of a round, from the client's copy of the factors."""
    P, Q, bu, bi = state
    ustates = [
        _const((P[a:b].copy(), bu[a:b].copy(), 0.0), "dsgd-users", attempt)
        for a, b in itertools.pairwise(row_edges)
    ]
    istates = [
        _const((Q[a:b].copy(), bi[a:b].copy()), "dsgd-items", attempt)
        for a, b in itertools.pairwise(col_edges)
    ]
    return ustates, istates


#: Reruns of a round whose work was lost with a worker (then the error propagates).
MAX_RETRIES = 3


def _work_lost(exc: BaseException) -> bool:
    """True when ``exc`` means results were lost with a worker while the client still runs."""
    import asyncio
    import concurrent.futures

    if active_client() is None or _client_down():
        return False
    name = type(exc).__name__
    if isinstance(exc, concurrent.futures.CancelledError | asyncio.CancelledError):
        return True
    if name in ("KilledWorker", "CommClosedError", "FutureCancelledError"):
        return True
    return "lost dependencies" in str(exc)


def _run_round(build: Any) -> tuple[Any, ...]:
    """``dask.compute(*build(attempt))``, rebuilt and rerun when work was lost with a worker.

    ``build`` makes the round's graph from the client's copy of its start
    state, so a rerun is the same computation with fresh task keys (the
    result is bit-identical).
    """
    for attempt in itertools.count():
        try:
            return dask.compute(*build(attempt))
        except Exception as exc:
            if attempt >= MAX_RETRIES or not _work_lost(exc):
                raise
            warnings.warn(
                f"SGD: a round of epochs lost its work ({type(exc).__name__}: "
                f"{(str(exc).splitlines() or [''])[0][:120]}); rerunning it from its start "
                f"state (retry {attempt + 1} of {MAX_RETRIES})",
                DMFWarning,
                stacklevel=3,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _epoch_graph(
    grid_blocks: list[list[Any]],
    ustates: list[Any],
    istates: list[Any],
    ucounts: list[Any],
    icounts: list[Any],
    strata: np.ndarray,
    args: tuple[Any, ...],
    epoch: int,
    split: bool,
) -> tuple[list[Delayed], list[Delayed], Delayed]:
    """One epoch (all strata) as one graph layer: new user and item states, and the loss parts.

    Built as a raw layer rather than with ``dask.delayed`` calls: an epoch is a
    handful of tasks and the ``delayed`` bookkeeping would cost more than the
    SGD on small data. With ``split`` (a distributed cluster) each
    ``dsgd-block`` result is cut by ``getitem`` tasks where it lies, so the
    next stratum fetches only the half it needs, and penalties are computed
    per block; in-process, halves are picked inside the consuming task and one
    ``dsgd-loss`` task does the penalties, to keep the task count low.
    """
    d = len(ustates)
    deps = [*ustates, *istates, *ucounts, *icounts] + [b for row in grid_blocks for b in row]
    token = tokenize([x.key for x in deps], args, epoch, list(strata), split)
    layer_name = f"dsgd-epoch-{token}"
    layer: dict[str, Any] = {}
    u_refs: list[Any] = [x.key for x in ustates]
    i_refs: list[Any] = [x.key for x in istates]
    for n, s in enumerate(strata):
        for i in range(d):
            j = (i + int(s)) % d
            out = f"dsgd-block-{token}-{n}-{i}-{j}"
            layer[out] = (_dsgd_block, grid_blocks[i][j].key, u_refs[i], i_refs[j], *args, n > 0)
            if split:
                u_refs[i] = f"dsgd-users-{token}-{n}-{i}-{j}"
                i_refs[j] = f"dsgd-items-{token}-{n}-{i}-{j}"
                layer[u_refs[i]] = (operator.getitem, out, 0)
                layer[i_refs[j]] = (operator.getitem, out, 1)
            else:
                u_refs[i] = (operator.getitem, out, 0)
                i_refs[j] = (operator.getitem, out, 1)
    if not split:
        # Name the final halves (the next epoch starts from them).
        for i in range(d):
            layer[f"dsgd-users-{token}-{i}"] = u_refs[i]
            layer[f"dsgd-items-{token}-{i}"] = i_refs[i]
        u_refs = [f"dsgd-users-{token}-{i}" for i in range(d)]
        i_refs = [f"dsgd-items-{token}-{i}" for i in range(d)]
    reg, reg_bias = args[2], args[3]
    counts = [c.key for c in ucounts + icounts]
    loss_key = f"dsgd-loss-{token}"
    if split:
        pen_keys = []
        for n, (k, c) in enumerate(zip(u_refs + i_refs, counts, strict=True)):
            pen_keys.append(f"dsgd-penalty-{token}-{n}")
            layer[pen_keys[-1]] = (_penalty, k, c, reg, reg_bias)
        layer[loss_key] = (_loss_parts, *pen_keys)
    else:
        layer[loss_key] = (_loss_all, list(u_refs + i_refs), counts, reg, reg_bias)
    graph = HighLevelGraph.from_collections(layer_name, layer, dependencies=deps)
    return (
        [Delayed(k, graph, layer=layer_name) for k in u_refs],
        [Delayed(k, graph, layer=layer_name) for k in i_refs],
        Delayed(loss_key, graph, layer=layer_name),
    )


def _loss_all(
    states: list[tuple[Any, ...]], counts: list[np.ndarray], reg: float, reg_bias: float
) -> tuple[float, float]:
    return _loss_parts(
        *[_penalty(s, c, reg, reg_bias) for s, c in zip(states, counts, strict=True)]
    )


def _dask_round(
    grid: list[list[Any]],
    start: tuple[np.ndarray, ...],
    row_edges: np.ndarray,
    col_edges: np.ndarray,
    counts: tuple[list[np.ndarray], list[np.ndarray]],
    args: tuple[float, float, float, bool],
    seed: int,
    epochs: range,
    lrs: list[float],
) -> tuple[list[tuple[float, float]], tuple[np.ndarray, ...]]:
    """A round of epochs as one Dask graph from the client's ``start`` state: ``(losses, end)``.

    The round starts from the client's copy of the state and ends by gathering
    the new one, so a worker lost mid-round only costs a rerun (:func:`_run_round`).
    """
    mu, reg, reg_bias, biases = args
    split = active_client() is not None
    d = len(grid)
    ucounts = [_const(c, "dsgd-user-counts") for c in counts[0]]
    icounts = [_const(c, "dsgd-item-counts") for c in counts[1]]

    def build(attempt: int) -> tuple[list[Delayed], list[Delayed], list[Delayed]]:
        cur_u, cur_i = _start_states(start, row_edges, col_edges, attempt)
        losses = []
        for e, lr in zip(epochs, lrs, strict=True):
            cur_u, cur_i, loss = _epoch_graph(
                grid, cur_u, cur_i, ucounts, icounts, _strata(seed, e, d),
                (mu, lr, reg, reg_bias, biases, seed, e), e, split,
            )  # fmt: skip
            losses.append(loss)
        return losses, cur_u, cur_i

    losses, us, its = _run_round(build)
    end = (
        np.concatenate([u[0] for u in us]),
        np.concatenate([i[0] for i in its]),
        np.concatenate([u[1] for u in us]),
        np.concatenate([i[1] for i in its]),
    )
    return list(losses), end


# ------------------------------------------------------------- in process
@dataclass(frozen=True, eq=False)
class LocalGrid:
    """The grid of an in-process fit: its blocks, and their arrays one after the other.

    ``data = (users, items, ratings, boff)``: block ``(i, j)``'s arrays at
    ``boff[i * d + j]:boff[i * d + j + 1]``; ``tiles = (tile_offs, toff)``: its
    tile offsets at ``tile_offs[toff[i * d + j]:toff[i * d + j + 1]]`` (the
    layout the lanes read, :func:`dmf.kernels._sgd.lanes_for`).
    """

    blocks: list[list[GridBlock]]
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    tiles: tuple[np.ndarray, np.ndarray]


def _inprocess_grid(
    ratings: Ratings,
    row_edges: np.ndarray,
    col_edges: np.ndarray,
    seed: int,
    dtype: str,
    tile: int,
) -> LocalGrid:
    """The blocks :func:`_build_grid` makes, built here without a task graph."""
    d = len(row_edges) - 1
    pieces = [
        _split_row_block(b, row_edges, col_edges) for b in local_values(ratings.blocks, RowBlock)
    ]
    blocks = [
        [
            _merge_cell(
                i,
                j,
                int(row_edges[i]),
                int(col_edges[j]),
                int(col_edges[j + 1] - col_edges[j]),
                seed,
                dtype,
                tile,
                *[p[i * d + j] for p in pieces],
            )
            for j in range(d)
        ]
        for i in range(d)
    ]
    flat = [b for row in blocks for b in row]
    boff = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum([b.nnz for b in flat], out=boff[1:])
    data = [np.concatenate([getattr(b, a) for b in flat]) for a in ("users", "items", "ratings")]
    toff = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum([len(b.tiles) for b in flat], out=toff[1:])
    tiles = (np.concatenate([b.tiles for b in flat]), toff)
    return LocalGrid(blocks, (*data, boff), tiles)


def _inprocess_round(
    grid: LocalGrid,
    start: tuple[np.ndarray, ...],
    row_edges: np.ndarray,
    col_edges: np.ndarray,
    counts: tuple[list[np.ndarray], list[np.ndarray]],
    args: tuple[float, float, float, bool],
    seed: int,
    epochs: range,
    lrs: list[float],
) -> tuple[list[tuple[float, float]], tuple[np.ndarray, ...]]:
    """A round of epochs run by lanes of threads in this process: ``(losses, end state)``.

    The same computation as the round's Dask graph (:func:`_epoch_graph`):
    each block's pass updates its rows of copies of ``start`` in place (the
    blocks of a stratum share no rows), with the same compiled code, and the
    losses are summed in the same order, so the result is bit-identical. One
    nogil call per thread runs the whole round (:func:`dmf.kernels._sgd.lanes_for`).
    """
    mu, reg, reg_bias, biases = args
    P, Q, bu, bi = (a.copy() for a in start)
    d = len(grid.blocks)
    n_e = len(epochs)
    sse = np.zeros((n_e, d))
    pen = np.zeros((n_e, 2 * d, 2))
    bar = np.zeros(3, dtype=np.int64)
    run_lane = lanes_for(P.shape[1])
    lane_args = (
        seed, np.asarray(epochs, dtype=np.int64), np.asarray(lrs, dtype=np.float64),
        grid.data, grid.tiles, (np.arange(d), np.arange(d)),
        (P, Q, bu, bi), (np.asarray(row_edges, np.int64), np.asarray(col_edges, np.int64)),
        (np.concatenate(counts[0]), np.concatenate(counts[1])), (mu, reg, reg_bias, biases),
        sse, pen, bar,
    )  # fmt: skip

    def lane(n: int, m: int) -> None:
        try:
            run_lane(n, m, *lane_args)
        except BaseException:
            bar[2] = 1  # the other lanes stop waiting for this one
            raise

    run_lanes(lane, min(d, n_threads()))
    losses = []
    for e in range(n_e):
        w = [_weigh(pen[e, b, 0], pen[e, b, 1], reg, reg_bias) for b in range(2 * d)]
        losses.append(_loss_parts(*zip([*sse[e].tolist(), *[0.0] * d], w, strict=True)))
    return losses, (P, Q, bu, bi)


# ---------------------------------------------------------------- estimator
class SGD(Recommender):
    r"""Biased matrix factorisation trained by distributed stratified SGD (DSGD).

    Prediction (Koren's biased MF, the model Surprise's ``SVD`` trains):
    :math:`\hat r_{ui} = \mu + b_u + b_i + p_u \cdot q_i`. SGD minimises

    .. math::

        \sum_{(u,i)} \left[(r_{ui} - \hat r_{ui})^2
        + \lambda (\lVert p_u\rVert^2 + \lVert q_i\rVert^2)
        + \lambda_b (b_u^2 + b_i^2)\right]

    one rating at a time: :math:`e = r_{ui} - \hat r_{ui}`,
    :math:`b_u \mathrel{+}= \eta (e - \lambda_b b_u)` (same for :math:`b_i`),
    :math:`p_u \mathrel{+}= \eta (e q_i - \lambda p_u)`,
    :math:`q_i \mathrel{+}= \eta (e p_u - \lambda q_i)`.

    The matrix is cut into a ``grid x grid`` array of blocks; each epoch runs
    ``grid`` strata (in an order reshuffled each epoch), each stratum's
    ``grid`` blocks share no users and no items and run as parallel
    ``dsgd-block`` Dask tasks (Gemulla et al., KDD 2011); a fit of at most
    2,000,000 ratings with no distributed Client runs them on a pool of
    threads in this process instead, with no task graph (the same result,
    without Dask's per-task cost). Within a block the
    ratings are stored grouped by cache-sized tiles (user range x item range),
    shuffled within each tile; each epoch visits the tiles, and chunks of
    1024 ratings within a tile, in a fresh seeded order. For a given ``seed`` and
    ``grid`` the result is bit-identical on the threaded scheduler and on a
    distributed cluster.

    Parameters
    ----------
    rank : int
        Number of latent factors (>= 1).
    n_epochs : int
        Passes over the training data (>= 1).
    lr : float
        Learning rate :math:`\eta` (> 0); the starting rate for ``"decay"``
        and ``"bold-driver"``.
    reg : float
        :math:`\lambda`, regularisation of the factors (>= 0).
    reg_bias : float
        :math:`\lambda_b`, regularisation of the biases (>= 0).
    lr_schedule : {"constant", "decay", "bold-driver"}
        ``"constant"``: :math:`\eta` every epoch. ``"decay"``: inverse-time
        decay :math:`\eta_t = \eta / (1 + \text{lr\_decay} \cdot t)` for epoch
        :math:`t = 0, 1, \dots`. ``"bold-driver"``: after an epoch whose
        training loss fell, :math:`\eta \leftarrow 1.05\,\eta`; after one whose
        loss rose (or became NaN/inf), the epoch's result is thrown away (the
        previous factors are restored) and :math:`\eta \leftarrow \eta / 2`.
        With ``"constant"`` and ``"decay"``, a NaN/inf loss raises
        :class:`dmf.ConvergenceError` naming the epoch.
    lr_decay : float
        Decay rate of the ``"decay"`` schedule (>= 0).
    biases : bool
        Learn :math:`b_u, b_i` (default). ``False`` trains plain MF around the
        global mean, :math:`\mu + p_u \cdot q_i`.
    init_scale : float
        Initial factors are drawn from :math:`\mathcal N(0, \text{init\_scale}^2)`
        (seeded); biases start at 0.
    grid : int or None
        Blocks per side of the DSGD grid (>= 1, at most the number of users
        and of items). ``None``: the number of Dask worker threads at fit time.
        The result depends on ``grid`` (only within noise).
    patience : int or None
        With ``validation=``: stop after this many epochs without a better
        validation RMSE. ``None``: run every epoch. Either way the model
        returned holds the best epoch's factors.
    seed : int or None
        Seed of every random draw, in ``[0, 2**63 - 1]``. ``None`` draws one, kept in
        ``seed_``.
    dtype : {"float32", "float64"}
        Precision of the factors.
    verbose : bool
        Print one line per epoch.

    Attributes
    ----------
    user_factors_, item_factors_ : numpy.ndarray
        ``(n_users, rank)``, ``(n_items, rank)``.
    user_bias_, item_bias_ : numpy.ndarray
    global_mean_ : float
    grid_ : int
        The grid used.
    seed_ : int
    best_epoch_ : int
        The epoch (1-based) whose factors were returned.
    history : pandas.DataFrame
        Per epoch: ``epoch``, ``loss`` (the regularised objective above divided
        by the number of ratings, with each squared error measured during the
        pass just before its rating's update), ``train_rmse`` (from the same
        errors), ``val_rmse`` (with ``validation=``), ``lr`` (the rate used),
        ``restored`` (only with ``"bold-driver"``: the epoch was thrown away),
        ``seconds``.

    Examples
    --------
    >>> import dmf
    >>> from dmf.testing import random_ratings
    >>> train = random_ratings(n_users=50, n_items=30, seed=1)
    >>> model = dmf.SGD(rank=4, n_epochs=3, grid=2, seed=0).fit(train)
    >>> model.user_factors_.shape, len(model.history)
    ((50, 4), 3)
    >>> model.predict([0], [0]).dtype
    dtype('float32')
    """

    kind = "sgd"

    def __init__(
        self,
        rank: int = 64,
        n_epochs: int = 45,
        lr: float = 0.01,
        reg: float = 0.08,
        reg_bias: float = 0.01,
        lr_schedule: str = "constant",
        lr_decay: float = 0.05,
        biases: bool = True,
        init_scale: float = 0.02,
        grid: int | None = None,
        patience: int | None = None,
        seed: int | None = 0,
        dtype: str = "float32",
        verbose: bool = False,
    ) -> None:
        self.rank = rank
        self.n_epochs = n_epochs
        self.lr = lr
        self.reg = reg
        self.reg_bias = reg_bias
        self.lr_schedule = lr_schedule
        self.lr_decay = lr_decay
        self.biases = biases
        self.init_scale = init_scale
        self.grid = grid
        self.patience = patience
        self.seed = seed
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------ checking
    def _validate_params(self) -> None:
        check_int("rank", self.rank, 1)
        check_int("n_epochs", self.n_epochs, 1)
        check_float("lr", self.lr, 0.0, strict=True)
        check_float("reg", self.reg, 0.0)
        check_float("reg_bias", self.reg_bias, 0.0)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_float("lr_decay", self.lr_decay, 0.0)
        check_param("biases", self.biases, isinstance(self.biases, bool), "True or False")
        check_float("init_scale", self.init_scale, 0.0, strict=True)
        if self.grid is not None:
            check_int("grid", self.grid, 1)
        if self.patience is not None:
            check_int("patience", self.patience, 1)
        if self.seed is not None:
            check_int("seed", self.seed, 0, 2**63 - 1)
        check_choice("dtype", self.dtype, ("float32", "float64"))
        check_param("verbose", self.verbose, isinstance(self.verbose, bool), "True or False")

    def _check_grid(self, d: int, ratings: Ratings) -> None:
        limit = min(ratings.n_users, ratings.n_items)
        if d > limit:
            who = "users" if ratings.n_users <= ratings.n_items else "items"
            raise ParameterError(
                f"grid={d} is not allowed: grid must be an integer in [1, {limit}] "
                f"(the training data has {ratings.n_users} users and {ratings.n_items} items; "
                f"a grid cannot have more blocks per side than it has {who})"
            )

    # ----------------------------------------------------------------- fit
    def fit(
        self,
        ratings: Any,
        validation: Any = None,
        checkpoint: Any = None,
        checkpoint_every: int = 1,
        resume: bool = False,
    ) -> SGD:
        """Train on a :class:`dmf.Ratings`; returns ``self``.

        Parameters
        ----------
        ratings : dmf.Ratings
            Training data.
        validation : dmf.Ratings or pandas.DataFrame, optional
            Held-out ratings scored (RMSE) after every epoch; the returned model
            is the best epoch's, and ``patience`` stops early. It must share at
            least one user and one item with ``ratings`` (else
            :class:`dmf.RatingsError` before any epoch).
        checkpoint : str, optional
            Local path or fsspec URL of a checkpoint store, saved every
            ``checkpoint_every`` epochs (crash-safe).
        checkpoint_every : int
            Epochs between checkpoints (>= 1); the last epoch is always saved.
        resume : bool
            Continue from the newest checkpoint in ``checkpoint`` (start afresh
            if there is none). The result is bit-identical to an uninterrupted
            fit with the same data, parameters and grid.

        Returns
        -------
        SGD
            The fitted estimator.

        Examples
        --------
        >>> import dmf
        >>> from dmf.testing import random_ratings
        >>> train = random_ratings(n_users=30, n_items=20, seed=0)
        >>> valid = random_ratings(n_users=30, n_items=20, seed=1)
        >>> model = dmf.SGD(rank=4, n_epochs=3, grid=1).fit(train, validation=valid)
        >>> list(model.history["epoch"])
        [1, 2, 3]
        """
        self._validate_params()
        ratings = check_ratings(ratings)
        check_int("checkpoint_every", checkpoint_every, 1)
        check_param("resume", resume, isinstance(resume, bool), "True or False")
        if resume and checkpoint is None:
            raise ParameterError("resume=True needs checkpoint= (the store to resume from)")
        if checkpoint is not None:
            check_param(
                "checkpoint",
                checkpoint,
                isinstance(checkpoint, (str, os.PathLike)),
                "a path or URL",
            )
            checkpoint = os.fspath(checkpoint)
        if validation is not None:
            validation = check_ratings(to_ratings(validation, name="validation"), "validation")
            _check_overlap(validation, ratings)

        ckpt = None
        if resume:
            ckpt = load_checkpoint(checkpoint)
        if self.grid is not None:
            d = int(self.grid)
        elif ckpt is not None and "grid" in ckpt[2]:
            d = int(ckpt[2]["grid"])
        else:
            d = min(max(1, n_threads()), ratings.n_users, ratings.n_items)
        self._check_grid(d, ratings)
        seed = (
            int(self.seed)
            if self.seed is not None
            else int(np.random.SeedSequence().entropy % (2**32))
        )
        fit_info = self._fingerprint(ratings, d, seed)
        if ckpt is not None:
            self._check_resumable(ckpt[2], fit_info)

        # ---- all checks done: the work starts here
        self._set_training_state(ratings)
        self.grid_, self.seed_ = d, seed
        dt = np.dtype(self.dtype)
        rank = int(self.rank)
        kpad = -(-rank // PAD) * PAD
        nnz = ratings.nnz
        row_edges = _grid_edges(ratings.user_counts, d)
        col_edges = _grid_edges(ratings.item_counts, d)
        tile = tile_rows(kpad, dt.itemsize)
        counts = (
            [ratings.user_counts[a:b].astype(np.float64) for a, b in itertools.pairwise(row_edges)],
            [ratings.item_counts[a:b].astype(np.float64) for a, b in itertools.pairwise(col_edges)],
        )
        inprocess = in_process(nnz)
        init = None
        if inprocess:
            # The grid's layout and the initial factors (both a few ms on small data,
            # in numpy calls that release the GIL) are made side by side.
            grid_blocks, init = thread_map(
                lambda f: f(),
                [
                    lambda: _inprocess_grid(ratings, row_edges, col_edges, seed, dt.name, tile),
                    lambda: None if ckpt else self._init_factors(ratings, seed, kpad, dt),
                ],
            )
        else:
            grid_blocks = _build_grid(ratings, row_edges, col_edges, seed, dt.name, tile)

        if ckpt is None:
            run = _Run(init or self._init_factors(ratings, seed, kpad, dt), float(self.lr))
        else:
            start, arrays, state = ckpt
            run = _Run.from_checkpoint(start, arrays, state, kpad)
            self.history_ = list(state["history"])
        nxt = run.start
        pending: list[tuple[Any, ...]] = []
        while pending or nxt < int(self.n_epochs):
            if not pending:
                # Run the next epochs: one per Dask call when each needs a decision
                # (bold driver, validation), else a round of up to ROUND chained
                # epochs (a bounded graph: fewer scheduler round trips on small data).
                # The round starts from the client's copy of the state and ends by
                # gathering the new one: a worker lost mid-round only costs a rerun.
                t0 = time.perf_counter()
                n = self._round_length(nxt, validation, checkpoint, checkpoint_every)
                lrs = []
                for e in range(nxt, nxt + n):
                    if self.lr_schedule == "decay":
                        run.lr = float(self.lr) / (1.0 + float(self.lr_decay) * e)
                    lrs.append(run.lr)
                common = (
                    grid_blocks, run.current, row_edges, col_edges, counts,
                    (float(ratings.global_mean), float(self.reg), float(self.reg_bias),
                     bool(self.biases)),
                    seed, range(nxt, nxt + n), lrs,
                )  # fmt: skip
                losses, end = _inprocess_round(*common) if inprocess else _dask_round(*common)
                secs = (time.perf_counter() - t0) / n
                last = nxt + n - 1
                pending = [
                    (e, lr_e, ld, end if e == last else None, secs)
                    for e, lr_e, ld in zip(range(nxt, nxt + n), lrs, losses, strict=True)
                ]
                nxt += n
            epoch, lr, (sse, pen), new_state, secs = pending.pop(0)
            t0 = time.perf_counter() - secs
            loss = (sse + pen) / nnz
            entry: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": float(loss),
                "train_rmse": math.sqrt(sse / nnz) if math.isfinite(sse) else math.nan,
                "lr": lr,
            }
            if self.lr_schedule == "bold-driver":
                entry["restored"] = False
            rose = run.prev_loss is not None and loss > run.prev_loss
            if not math.isfinite(loss) and self.lr_schedule != "bold-driver":
                raise ConvergenceError(
                    f"SGD diverged in epoch {epoch + 1}: the training loss is {loss} "
                    f"with lr={lr:g}; use a smaller lr (e.g. lr={lr / 10:g})"
                )
            if self.lr_schedule == "bold-driver" and (not math.isfinite(loss) or rose):
                # Throw the epoch away (keep the previous states) and halve the rate.
                entry["restored"] = True
                run.lr = lr * BOLD_SHRINK
            else:
                # (mid-round epochs are accepted, then the round's last one sets the state)
                run.accept(float(loss), new_state)
                if self.lr_schedule == "bold-driver":
                    run.lr = lr * BOLD_GROW
            if validation is not None:
                self._set_factors(run.current, rank)
                rmse = float(evaluate(self, validation, metrics=["rmse"])["rmse"])
                entry["val_rmse"] = rmse
                run.score(epoch + 1, rmse, self.patience)
            entry["seconds"] = time.perf_counter() - t0
            self._record(self.verbose, **entry)
            done = epoch + 1
            if checkpoint is not None and (
                done % checkpoint_every == 0 or done == self.n_epochs or run.stopped
            ):
                self._save(checkpoint, done, run, fit_info)
            if run.stopped:
                break

        if validation is not None and run.best_arrays is not None:
            final = run.best_arrays
            self.best_epoch_ = int(run.best["epoch"])
        else:
            final = run.current
            self.best_epoch_ = _last_accepted(self.history_)
        if not run.accepted:
            warnings.warn(
                f"the training loss never fell (bold driver restored every epoch, ending "
                f"with lr={run.lr:g}): the model holds its initial factors; use a smaller "
                f"lr than {self.lr}",
                DMFWarning,
                stacklevel=2,
            )
        self._set_factors(final, rank)
        return self

    # ---------------------------------------------------------- internals
    def _round_length(
        self, epoch: int, validation: Any, checkpoint: Any, checkpoint_every: int
    ) -> int:
        """How many epochs to chain into the next Dask call (1 when each needs a decision)."""
        if validation is not None or self.lr_schedule == "bold-driver":
            return 1
        n = min(ROUND, int(self.n_epochs) - epoch)
        if checkpoint is not None:
            n = min(n, checkpoint_every - epoch % checkpoint_every)
        return max(1, n)

    def _init_factors(
        self, ratings: Ratings, seed: int, kpad: int, dt: np.dtype
    ) -> tuple[np.ndarray, ...]:
        """Seeded normal factors (independent of the grid) padded with zero columns; zero biases."""
        rank = int(self.rank)
        rng = np.random.default_rng([seed, _INIT])
        P = np.zeros((ratings.n_users, kpad), dtype=dt)
        Q = np.zeros((ratings.n_items, kpad), dtype=dt)
        P[:, :rank] = rng.normal(0.0, self.init_scale, (ratings.n_users, rank))
        Q[:, :rank] = rng.normal(0.0, self.init_scale, (ratings.n_items, rank))
        return P, Q, np.zeros(ratings.n_users, dtype=dt), np.zeros(ratings.n_items, dtype=dt)

    def _set_factors(self, state: tuple[np.ndarray, ...], rank: int) -> None:
        P, Q, bu, bi = state
        self.user_factors_ = np.ascontiguousarray(P[:, :rank])
        self.item_factors_ = np.ascontiguousarray(Q[:, :rank])
        self.user_bias_ = np.asarray(bu)
        self.item_bias_ = np.asarray(bi)

    def _fingerprint(self, ratings: Ratings, d: int, seed: int) -> dict[str, Any]:
        params = self.get_params()
        for name in ("n_epochs", "patience", "verbose", "grid", "seed"):
            params.pop(name)
        return {
            "params": params,
            "grid": d,
            "seed": seed,
            "data": [ratings.n_users, ratings.n_items, ratings.nnz, float(ratings.global_mean)],
        }

    def _check_resumable(self, state: dict[str, Any], want: dict[str, Any]) -> None:
        have = state.get("fit", {})
        diff = [k for k in want if have.get(k) != want[k]]
        if diff:
            raise ParameterError(
                f"cannot resume: the checkpoint was written by a fit with other {diff} "
                f"(checkpoint: {[have.get(k) for k in diff]}; now: {[want[k] for k in diff]}); "
                "resume with the same data and parameters, or use a new checkpoint path"
            )

    def _save(self, path: str, done: int, run: _Run, fit_info: dict[str, Any]) -> None:
        rank = int(self.rank)
        arrays = dict(zip(_NAMES, run.current, strict=True))
        if run.best_arrays is not None:
            arrays.update({"best_" + k: v for k, v in zip(_NAMES, run.best_arrays, strict=True)})
        for name in ("P", "Q", "best_P", "best_Q"):
            if name in arrays:
                arrays[name] = arrays[name][:, :rank]
        state = {
            "fit": fit_info,
            "grid": fit_info["grid"],
            "history": self.history_,
            **run.state(),
        }
        save_checkpoint(path, done, arrays, state)


_NAMES = ("P", "Q", "bu", "bi")


class _Run:
    """What a fit carries from epoch to epoch (and through a checkpoint)."""

    def __init__(self, current: tuple[np.ndarray, ...], lr: float) -> None:
        self.start = 0
        self.current: tuple[np.ndarray, ...] | None = current
        self.lr = lr
        self.prev_loss: float | None = None
        self.accepted = False
        self.stopped = False
        self.best: dict[str, Any] = {"epoch": 0, "rmse": None, "since": 0}
        self.best_arrays: tuple[np.ndarray, ...] | None = None

    @classmethod
    def from_checkpoint(
        cls, start: int, arrays: dict[str, np.ndarray], state: dict[str, Any], kpad: int
    ) -> _Run:
        current = (_pad(arrays["P"], kpad), _pad(arrays["Q"], kpad), arrays["bu"], arrays["bi"])
        run = cls(current, float(state["lr"]))
        run.start = int(start)
        run.prev_loss = state["prev_loss"]
        run.accepted = bool(state["accepted"])
        run.stopped = bool(state["stopped"])
        run.best = dict(state["best"])
        if "best_P" in arrays:
            run.best_arrays = (
                _pad(arrays["best_P"], kpad),
                _pad(arrays["best_Q"], kpad),
                arrays["best_bu"],
                arrays["best_bi"],
            )
        if run.stopped:
            run.start = 1 << 62  # early stopping had ended the fit
        return run

    def state(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "prev_loss": self.prev_loss,
            "accepted": self.accepted,
            "stopped": self.stopped,
            "best": self.best,
        }

    def accept(self, loss: float, state: tuple[np.ndarray, ...] | None) -> None:
        self.prev_loss = loss
        self.accepted = True
        if state is not None:  # None mid-round: the round's last epoch brings the state
            self.current = state

    def score(self, epoch: int, rmse: float, patience: int | None) -> None:
        if self.best["rmse"] is None or rmse < self.best["rmse"]:
            self.best = {"epoch": epoch, "rmse": rmse, "since": 0}
            self.best_arrays = self.current
        else:
            self.best["since"] += 1
        if patience is not None and self.best["since"] >= int(patience):
            self.stopped = True


def _check_overlap(validation: Ratings, ratings: Ratings) -> None:
    """Refuse a validation set sharing no user or no item with the training data.

    Its RMSE would come from cold-start predictions only, the same for every
    epoch: early stopping and best-epoch selection would be meaningless.
    """
    for side, val_ids, train_ids in (
        ("users", validation.users, ratings.users),
        ("items", validation.items, ratings.items),
    ):
        if not (train_ids.get_indexer(val_ids) >= 0).any():
            raise RatingsError(
                f"validation shares no {side} with the training data: none of its "
                f"{len(val_ids)} {side} (first {first_rows(map(repr, val_ids))}) is among "
                f"the {len(train_ids)} training {side}, so its RMSE could not change between "
                "epochs; validate on held-out ratings of the training users and items "
                "(e.g. dmf.split)"
            )


def _pad(a: np.ndarray, kpad: int) -> np.ndarray:
    out = np.zeros((a.shape[0], kpad), dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


def _last_accepted(history: list[dict[str, Any]]) -> int:
    for h in reversed(history):
        if not h.get("restored"):
            return int(h["epoch"])
    return 0
