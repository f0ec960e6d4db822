"""Lanes: one nogil call per thread runs a whole round of DSGD epochs (no Dask here).

A round's ``n`` *lanes*, one per thread, each run their blocks of every
stratum and meet the others at a spin barrier between strata, all inside one
nogil call per thread and round; a Python thread pool handing out the blocks
and collecting the results cost about a third of a stratum's work on small
data. A Dask task runs one block as the single lane of a ``1 x 1`` grid, so
the same compiled code makes every pass either way (bit-identical results).

:func:`lanes_for` is the biased-MF SGD runner; :func:`_barrier` is shared with
the BPR runner (:mod:`dmf.kernels._bpr`).
"""

from __future__ import annotations

import ctypes
import platform
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from dmf.kernels._rng import stream_key
from dmf.kernels._sgd import (
    CHUNK,
    CHUNKS,
    _compiled,
    _item_ptr,
    _segments,
    kernel_for,
    n_segments,
    penalty_sums,
    strata_order,
)

__all__ = ["lanes_for"]


@intrinsic
def _atomic_add(typingctx, arr, idx, val):
    """``arr[idx] += val`` as one atomic step (sequentially consistent); returns the old value."""
    sig = types.int64(arr, idx, val)

    def codegen(context, builder, signature, args):
        ptr = _item_ptr(context, builder, signature.args[0], args[0], [args[1]])
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def _atomic_load(typingctx, arr, idx):
    """``arr[idx]``, read atomically (acquire: what was written before the matching store shows)."""
    sig = types.int64(arr, idx)

    def codegen(context, builder, signature, args):
        ptr = _item_ptr(context, builder, signature.args[0], args[0], [args[1]])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


@intrinsic
def _pause(typingctx):
    """The CPU's spin-wait hint (``pause`` on x86; nothing elsewhere)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


try:  # give the core away while waiting long (another lane is descheduled)
    _sched_yield = ctypes.CDLL(None).sched_yield
    _sched_yield.restype = ctypes.c_int
    _sched_yield.argtypes = ()
except (OSError, AttributeError, TypeError):  # pragma: no cover - no POSIX libc

    @njit(nogil=True)
    def _sched_yield() -> int:
        return 0


#: Spin-wait rounds (about 50 ns each) before a waiting lane starts yielding its core.
SPINS = 4000


@njit(nogil=True, cache=False)
def _barrier(bar: np.ndarray, n: int) -> bool:
    """Wait until ``n`` lanes have arrived; ``False`` if a lane gave up instead.

    ``bar``: int64 ``[arrived, generation, gave_up]``, shared by the lanes.
    The atomic steps order memory: what a lane wrote before arriving is
    seen by every lane after it leaves.
    """
    if n == 1:
        return True
    gen = _atomic_load(bar, 1)
    if _atomic_add(bar, 0, 1) == n - 1:
        _atomic_add(bar, 0, -n)
        _atomic_add(bar, 1, 1)
        return True
    spins = 0
    while _atomic_load(bar, 1) == gen:
        if _atomic_load(bar, 2) != 0:
            return False
        spins += 1
        if spins < SPINS:
            _pause()
        else:
            _sched_yield()
    return True


def _make_lanes(K: int):
    """The lane runner for rank ``K`` (see :func:`lanes_for`)."""
    sgd_pass = kernel_for(K)

    @njit(nogil=True, cache=False)
    def run_lane(
        lane, n_lanes, seed, epochs, lrs, data, tiles, ids, factors, edges, counts, consts,
        sse, pen, bar,
    ):  # fmt: skip
        users, items, ratings, boff = data
        tile_offs, toff = tiles
        row_ids, col_ids = ids
        P, Q, bu, bi = factors
        row_edges, col_edges = edges
        ucounts, icounts = counts
        mu, reg, reg_bias, biases = consts
        d = row_edges.shape[0] - 1
        for e in range(epochs.shape[0]):
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
                    x = sgd_pass(
                        users[a0:a1], items[a0:a1], ratings[a0:a1], lo, hi,
                        P[r0:r1], Q[q0:q1], bu[r0:r1], bi[q0:q1],
                        mu, lrs[e], reg, reg_bias, biases,
                    )  # fmt: skip
                    sse[e, i] = x if n == 0 else x + sse[e, i]
                if not _barrier(bar, n_lanes):
                    return
            if pen.shape[0] == 0:
                continue
            for i in range(lane, d, n_lanes):
                r0, r1, q0, q1 = row_edges[i], row_edges[i + 1], col_edges[i], col_edges[i + 1]
                pen[e, i, 0], pen[e, i, 1] = penalty_sums(P[r0:r1], bu[r0:r1], ucounts[r0:r1])
                pen[e, d + i, 0], pen[e, d + i, 1] = penalty_sums(
                    Q[q0:q1], bi[q0:q1], icounts[q0:q1]
                )
            # The next epoch's first stratum updates item blocks other lanes just read.
            if e + 1 < epochs.shape[0] and not _barrier(bar, n_lanes):
                return

    return run_lane


def lanes_for(rank: int) -> Any:
    """The lane runner for factor rows of ``rank`` values (compiled once per process).

    ``run_lane(lane, n_lanes, seed, epochs, lrs, data, tiles, ids, factors,
    edges, counts, consts, sse, pen, bar)`` runs lane ``lane`` of ``n_lanes``
    over epochs ``epochs[0], epochs[1], ...`` of a ``d x d`` grid: in stratum
    ``n`` of epoch ``e`` (``s = strata_order(seed, e, d)[n]``) it makes the
    pass over each block ``(i, (i + s) % d)`` with ``i = lane, lane + n_lanes,
    ...`` at learning rate ``lrs[e]``, visiting its segments in the order of
    the stream ``(seed, CHUNKS, e, row_ids[i], col_ids[j])``
    (:func:`visit_segments`), then waits at the barrier ``bar`` (int64
    ``[0, 0, 0]``; set ``bar[2]`` to make waiting lanes return). All
    ``n_lanes`` lanes must run at once, each in its own thread.

    - ``data = (users, items, ratings, boff)``: the blocks' arrays, one after
      the other, block ``b = i * d + j`` at ``boff[b]:boff[b + 1]``;
      ``tiles = (tile_offs, toff)``: block ``b``'s tile offsets at
      ``tile_offs[toff[b]:toff[b + 1]]``; ``ids = (row_ids, col_ids)``: the
      blocks' numbers in the fit's grid (for the streams' keys);
    - ``factors = (P, Q, bu, bi)``, updated in place; ``edges = (row_edges,
      col_edges)``: the rows of ``P``/``Q`` of each block;
    - ``counts = (user counts, item counts)`` (float64, one per row) and
      ``pen``, float64 ``(epochs, 2d, 2)``: after each epoch ``pen[e, i]``
      (user block ``i``) and ``pen[e, d + j]`` (item block ``j``) receive
      :func:`penalty_sums`; a ``pen`` of length 0 skips them;
    - ``consts = (mu, reg, reg_bias, biases)``; ``sse[e, i]``: the squared
      errors of user block ``i``'s passes in epoch ``e``, summed in stratum order.

    A Dask task runs one block as the single lane of a ``1 x 1`` grid, so the
    same compiled code makes every pass either way (bit-identical results).
    """
    return _compiled("lanes", rank, _make_lanes)
