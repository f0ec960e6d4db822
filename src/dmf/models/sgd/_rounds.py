"""One SGD round of epochs, two ways: lanes of threads in-process, or one Dask graph.

Both strategies start from the client's copy of the round's start state, make
every block's pass with the same compiled runner (:mod:`dmf.kernels._lanes`)
in the same order and sum the losses in the same order, so they return the
same bits; the engine picks one (:meth:`dmf.engine.Engine.pick`). A round is
``(spec, start, epochs, lrs) -> (losses, end state)``, with ``losses[e] =
(sum of squared errors, penalty)``.
"""

from __future__ import annotations

import itertools
import math
import operator
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from dmf.engine._compute import active_client, key, n_threads, run_lanes
from dmf.engine._rounds import run_graph
from dmf.kernels._lanes import lanes_for
from dmf.kernels._sgd import penalty_sums, strata_order
from dmf.models.sgd._grid import Grid, GridBlock

__all__ = ["RoundSpec"]


@dataclass(frozen=True, eq=False)
class RoundSpec:
    """What every round of one fit shares: the grid, the row counts, constants, the seed.

    ``counts``: per user block and per item block, the rows' rating counts
    (float64, for the penalty); ``consts = (mu, reg, reg_bias, biases)``.
    """

    grid: Grid
    counts: tuple[list[np.ndarray], list[np.ndarray]]
    consts: tuple[float, float, float, bool]
    seed: int


Losses = list[tuple[float, float]]
State = tuple[np.ndarray, ...]


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
    spec: RoundSpec, start: State, epochs: range, lrs: list[float]
) -> tuple[Losses, State]:
    """A round of epochs as one Dask graph from the client's ``start`` state: ``(losses, end)``.

    The round ends by gathering the new state, so a worker lost mid-round only
    costs a rerun (:func:`dmf.engine._rounds.run_graph`).
    """
    grid, counts, seed = spec.grid.blocks, spec.counts, spec.seed
    row_edges, col_edges = spec.grid.row_edges, spec.grid.col_edges
    mu, reg, reg_bias, biases = spec.consts
    split = active_client() is not None
    d = len(grid)
    ucounts = [_const(c, "dsgd-user-counts") for c in counts[0]]
    icounts = [_const(c, "dsgd-item-counts") for c in counts[1]]

    def build(attempt: int) -> tuple[list[Delayed], list[Delayed], list[Delayed]]:
        cur_u, cur_i = _start_states(start, row_edges, col_edges, attempt)
        losses = []
        for e, lr in zip(epochs, lrs, strict=True):
            cur_u, cur_i, loss = _epoch_graph(
                grid, cur_u, cur_i, ucounts, icounts, strata_order(seed, e, d),
                (mu, lr, reg, reg_bias, biases, seed, e), e, split,
            )  # fmt: skip
            losses.append(loss)
        return losses, cur_u, cur_i

    losses, us, its = run_graph(build, "SGD")
    end = (
        np.concatenate([u[0] for u in us]),
        np.concatenate([i[0] for i in its]),
        np.concatenate([u[1] for u in us]),
        np.concatenate([i[1] for i in its]),
    )
    return list(losses), end


def _run_lanes(run_lane: Any, lane_args: tuple[Any, ...], bar: np.ndarray, d: int) -> None:
    """Run a round's lanes, one thread each; a lane that fails releases the others."""

    def lane(n: int, m: int) -> None:
        try:
            run_lane(n, m, *lane_args)
        except BaseException:
            bar[2] = 1  # the other lanes stop waiting for this one
            raise

    run_lanes(lane, min(d, n_threads()))


def _inprocess_round(
    spec: RoundSpec, start: State, epochs: range, lrs: list[float]
) -> tuple[Losses, State]:
    """A round of epochs run by lanes of threads in this process: ``(losses, end state)``.

    The same computation as the round's Dask graph (:func:`_epoch_graph`):
    each block's pass updates its rows of copies of ``start`` in place (the
    blocks of a stratum share no rows), with the same compiled code, and the
    losses are summed in the same order, so the result is bit-identical. One
    nogil call per thread runs the whole round (:func:`dmf.kernels._lanes.lanes_for`).
    """
    grid, counts, seed = spec.grid.flat, spec.counts, spec.seed
    row_edges, col_edges = spec.grid.row_edges, spec.grid.col_edges
    mu, reg, reg_bias, biases = spec.consts
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

    _run_lanes(run_lane, lane_args, bar, d)
    losses = []
    for e in range(n_e):
        w = [_weigh(pen[e, b, 0], pen[e, b, 1], reg, reg_bias) for b in range(2 * d)]
        losses.append(_loss_parts(*zip([*sse[e].tolist(), *[0.0] * d], w, strict=True)))
    return losses, (P, Q, bu, bi)
