"""SGD kernel for biased matrix factorisation over one block of ratings (no Dask here).

One call makes one pass over one block of a DSGD grid: the ratings of users
``U`` (rows of ``P``) on items ``I`` (rows of ``Q``), stored as three
contiguous arrays of local indices and values. The block's ratings are kept
grouped by *tile* (a range of users x a range of items whose factor rows fit
in the L2 cache together), in a seeded shuffled order within each tile. A pass
visits the tiles in a random order and, within a tile, its chunks of
:data:`CHUNK` ratings in a random order (both drawn per epoch from a keyed
stream, :func:`visit_segments`): reads of the rating arrays stay contiguous,
the factor rows being updated stay in cache, and the visiting order changes
from epoch to epoch.

For each rating :math:`r_{ui}` (Koren's biased MF, the update Surprise's SVD uses):

.. math::

    e &= r_{ui} - (\\mu + b_u + b_i + p_u \\cdot q_i) \\\\
    b_u &\\leftarrow b_u + \\eta (e - \\lambda_b b_u), \\qquad
    b_i \\leftarrow b_i + \\eta (e - \\lambda_b b_i) \\\\
    p_u &\\leftarrow p_u + \\eta (e q_i - \\lambda p_u), \\qquad
    q_i \\leftarrow q_i + \\eta (e p_u - \\lambda q_i)

(both factor updates use the values from before the step). ``P``, ``Q``, ``bu``
and ``bi`` are updated in place; the return value is the sum of squared errors
``e`` met during the pass (each measured just before its rating's update).

:func:`dmf.kernels._lanes.lanes_for` runs these passes over a whole grid, in
a Dask task (one block) or in-process (whole epochs).

:func:`_reference_sgd_block` is the same pass in plain Python (float64), used
by the tests.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from dmf.kernels._rng import shuffle, stream_key

__all__ = [
    "CHUNK",
    "CHUNKS",
    "SHUFFLE",
    "STRATA",
    "kernel_for",
    "n_segments",
    "penalty_sums",
    "sgd_block",
    "strata_order",
    "tile_offsets",
    "tile_rows",
    "visit_order",
    "visit_segments",
]

#: Ratings per contiguous chunk of a block's pass (12 KiB of rating arrays).
CHUNK = 1024
#: Bytes of factor rows per tile side: a tile's user rows and item rows together
#: stay well inside a 1.25 MiB L2 cache (measured at rank 64 on a 35,000 x 5,350
#: block: 47 ns per rating untiled, 25 ns with 128-512 KiB tiles).
TILE_BYTES = 256 * 1024


def tile_rows(rank: int, itemsize: int) -> int:
    """Users (or items) per tile for factor rows of ``rank`` values of ``itemsize`` bytes."""
    return max(16, TILE_BYTES // (int(rank) * int(itemsize)))


def tile_offsets(users: np.ndarray, items: np.ndarray, rows: int, n_item_rows: int):
    """Stable order grouping ratings by tile, and the tiles' offsets into that order."""
    n_tc = max(1, -(-int(n_item_rows) // rows))
    tid = (users.astype(np.int64) // rows) * n_tc + items.astype(np.int64) // rows
    n_tiles = int(tid.max()) + 1 if tid.size else 1
    # (uint16 keys, when they fit, are sorted by radix: linear time)
    order = np.argsort(tid.astype(np.uint16) if n_tiles <= 1 << 16 else tid, kind="stable")
    offsets = np.zeros(n_tiles + 1, dtype=np.int64)
    np.cumsum(np.bincount(tid, minlength=n_tiles), out=offsets[1:])
    return order, offsets


@njit(nogil=True, cache=False)
def n_segments(tiles: np.ndarray, chunk: int) -> int:
    """How many segments a pass over a block with tile offsets ``tiles`` visits."""
    n = 0
    for t in range(tiles.shape[0] - 1):
        n += (tiles[t + 1] - tiles[t] + chunk - 1) // chunk
    return n


@njit(nogil=True, cache=False)
def _segments(tiles: np.ndarray, key: np.uint64, chunk: int, lo: np.ndarray, hi: np.ndarray):
    """Write a pass's segments (:func:`visit_segments`) into ``lo``/``hi``."""
    order = np.arange(tiles.shape[0] - 1)
    state = shuffle(key, order)
    n = 0
    for t in order:
        a, b = tiles[t], tiles[t + 1]
        m = (b - a + chunk - 1) // chunk
        seg = lo[n : n + m]
        for c in range(m):
            seg[c] = c
        state = shuffle(state, seg)
        for c in range(m):
            seg[c] = a + seg[c] * chunk
            hi[n + c] = min(seg[c] + chunk, b)
        n += m


def visit_segments(
    tiles: np.ndarray, key: int, chunk: int = CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` int64 arrays: the contiguous rating ranges a pass visits, in order.

    Tiles in a random order; within each tile, its chunks in a random order;
    both drawn from the stream of ``key`` (:func:`dmf.kernels._rng.stream_key`).
    """
    n = n_segments(tiles, chunk)
    lo, hi = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    _segments(tiles, np.uint64(key), chunk, lo, hi)  # (numba hands keys back as Python ints)
    return lo, hi


def visit_order(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The rating indices a pass over segments ``(lo, hi)`` visits, in order."""
    parts = [np.arange(a, b) for a, b in zip(lo, hi, strict=True)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _item_ptr(context, builder, aryty, arr, idx):
    """LLVM pointer to the element of array ``arr`` (numba type ``aryty``) at index ``idx``."""
    ary = context.make_array(aryty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to pull ``arr[idx]``'s cache line in (LLVM ``prefetch``, for writing)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        ptr = _item_ptr(context, builder, signature.args[0], args[0], [args[1]])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # (address, rw=1 write, locality=3 keep in all caches, cache type=1 data)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


#: How many ratings ahead the kernel prefetches factor rows.
PREFETCH = 6


@njit(nogil=True, cache=False, fastmath=True, inline="always")
def _update_rows(P, Q, u, i, shrink, g, k):
    """``p_u, q_i <- shrink * p_u + g * q_i, shrink * q_i + g * p_u`` (old values on the right)."""
    for f in range(k):
        p = P[u, f]
        q = Q[i, f]
        P[u, f] = shrink * p + g * q
        Q[i, f] = shrink * q + g * p


@njit(nogil=True, cache=False, fastmath=True, inline="always")
def _loop_dot(P, Q, u, i):
    """``P[u] . Q[i]`` as a plain loop (any rank)."""
    dot = P.dtype.type(0.0)
    for f in range(P.shape[1]):
        dot += P[u, f] * Q[i, f]
    return dot


#: Independent sums a row dot product keeps (its vector FMAs form this many chains).
DOT_CHAINS = 4


def _make_dot(K: int):
    """``dot(P, Q, u, i)``: ``P[u] . Q[i]`` over ``K`` columns, as explicit 256-bit vector code.

    LLVM, left to itself, summed a fully unrolled dot product of 112 float32
    in one chain of 12 dependent FMAs and two horizontal sums (read off the
    assembly: about 80 cycles before a rating's error is known, and its
    update waits for it). Here the vectors go to
    :data:`DOT_CHAINS` accumulators in turn, which are added at the end, then
    across lanes. ``K`` must be a multiple of the vector width (8 float32 or
    4 float64; the solver pads rows to 16); rows must be contiguous.
    """

    @intrinsic
    def dot(typingctx, P, Q, u, i):
        if P.dtype != Q.dtype or P.dtype not in (types.float32, types.float64):
            return None
        sig = P.dtype(P, Q, u, i)

        def codegen(context, builder, signature, args):
            pty, qty = signature.args[0], signature.args[1]
            elt = context.get_data_type(pty.dtype)
            width = 8 if pty.dtype == types.float32 else 4
            if K % width:
                raise ValueError(f"rank {K} is not a multiple of {width}")
            vty = ir.VectorType(elt, width)
            zero = context.get_constant(types.intp, 0)
            rows = []
            for aty, arr, n in ((pty, args[0], 2), (qty, args[1], 3)):
                row = context.cast(builder, args[n], signature.args[n], types.intp)
                rows.append(_item_ptr(context, builder, aty, arr, [row, zero]))
            bits = 32 if width == 8 else 64
            fma = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vty, [vty, vty, vty]),
                f"llvm.fma.v{width}f{bits}",
            )
            size = bits // 8
            acc = [None] * DOT_CHAINS
            for n in range(K // width):
                off = ir.Constant(ir.IntType(64), n * width)
                a, b = (
                    builder.load(
                        builder.bitcast(builder.gep(r, [off]), vty.as_pointer()), align=size
                    )
                    for r in rows
                )
                c = n % DOT_CHAINS
                acc[c] = builder.fmul(a, b) if acc[c] is None else builder.call(fma, [a, b, acc[c]])
            live = [x for x in acc if x is not None]
            while len(live) > 1:  # pairwise: (a0 + a1) + (a2 + a3)
                live = [
                    builder.fadd(live[m], live[m + 1]) if m + 1 < len(live) else live[m]
                    for m in range(0, len(live), 2)
                ]
            v, w = live[0], width
            while w > 1:  # across the lanes, halving
                w //= 2
                mask = ir.VectorType(ir.IntType(32), w)
                lo = builder.shuffle_vector(v, v, ir.Constant(mask, list(range(w))))
                hi = builder.shuffle_vector(v, v, ir.Constant(mask, list(range(w, 2 * w))))
                v = builder.fadd(lo, hi)
            return builder.extract_element(v, ir.Constant(ir.IntType(32), 0))

        return sig, codegen

    return dot


def _make_kernel(K: int):
    """The SGD pass, compiled for rank ``K`` as a constant (``K = 0``: any rank).

    With the rank known at compile time LLVM unrolls and vectorises the two
    row loops completely (measured at rank 64: 28 vs 51 ns per rating), and
    the dot product is explicit vector code in four chains (:func:`_make_dot`;
    measured at rank 112: 30-33 vs 36-38 ns per rating, one thread).
    """
    rowdot = _make_dot(K) if K > 0 and K % 8 == 0 else _loop_dot

    @njit(nogil=True, cache=False, fastmath=True)
    def sgd_pass(
        users: np.ndarray,
        items: np.ndarray,
        ratings: np.ndarray,
        seg_lo: np.ndarray,
        seg_hi: np.ndarray,
        P: np.ndarray,
        Q: np.ndarray,
        bu: np.ndarray,
        bi: np.ndarray,
        mu: float,
        lr: float,
        reg: float,
        reg_bias: float,
        biases: bool,
    ) -> float:
        k = K if K > 0 else P.shape[1]  # folded to a constant when K > 0
        dt = P.dtype.type
        mu_ = dt(mu)
        lr_ = dt(lr)
        lr_reg_b = dt(lr * reg_bias)
        shrink = dt(1.0 - lr * reg)
        Pflat = P.reshape(-1)
        Qflat = Q.reshape(-1)
        sse = 0.0
        for c in range(seg_lo.shape[0]):
            lo = seg_lo[c]
            hi = seg_hi[c]
            t = lo
            while t < hi:
                # The rows a few ratings ahead are random reads: ask for them now
                # (measured: halves the time per rating once factors outgrow L2).
                if t + PREFETCH + 1 < hi:
                    for a in range(2):
                        un = users[t + PREFETCH + a] * k
                        im = items[t + PREFETCH + a] * k
                        for f in range(0, k, 16):
                            _prefetch(Pflat, un + f)
                            _prefetch(Qflat, im + f)
                u = users[t]
                i = items[t]
                if t + 1 < hi and users[t + 1] != u and items[t + 1] != i:
                    # Two ratings on other rows: the second's prediction does not
                    # depend on the first's update, so both dot products run at
                    # once (two dependency chains instead of one; the same result
                    # as one at a time). Measured at rank 112 on ML-100K: 10% off
                    # the whole fit when the host is busy, within noise when idle.
                    u2 = users[t + 1]
                    i2 = items[t + 1]
                    dot = rowdot(P, Q, u, i)
                    dot2 = rowdot(P, Q, u2, i2)
                    e = ratings[t] - (mu_ + bu[u] + bi[i] + dot)
                    e2 = ratings[t + 1] - (mu_ + bu[u2] + bi[i2] + dot2)
                    sse += e * e
                    sse += e2 * e2
                    if biases:
                        bu[u] += lr_ * e - lr_reg_b * bu[u]
                        bi[i] += lr_ * e - lr_reg_b * bi[i]
                        bu[u2] += lr_ * e2 - lr_reg_b * bu[u2]
                        bi[i2] += lr_ * e2 - lr_reg_b * bi[i2]
                    _update_rows(P, Q, u, i, shrink, lr_ * e, k)
                    _update_rows(P, Q, u2, i2, shrink, lr_ * e2, k)
                    t += 2
                    continue
                dot = rowdot(P, Q, u, i)
                e = ratings[t] - (mu_ + bu[u] + bi[i] + dot)
                sse += e * e
                if biases:
                    bu[u] += lr_ * e - lr_reg_b * bu[u]
                    bi[i] += lr_ * e - lr_reg_b * bi[i]
                _update_rows(P, Q, u, i, shrink, lr_ * e, k)
                t += 1
        return sse

    return sgd_pass


#: One SGD pass over a block's ratings, any rank; updates ``P, Q, bu, bi`` in place.
#: ``users``/``items`` are int32 row numbers into ``P``/``Q`` (C-contiguous);
#: ``ratings`` has the factors' dtype. Returns the sum of squared errors (float64).
sgd_block = _make_kernel(0)


@njit(nogil=True, cache=False)
def penalty_sums(F: np.ndarray, b: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """``(sum_r counts[r] * |F[r]|^2, sum_r counts[r] * b[r]^2)``, accumulated in float64.

    Summed column by column (one float64 sum per column over the rows, then
    the columns in order): that vectorises without ``fastmath``, so the result
    is fixed by the order written here wherever the function is compiled in,
    and the lanes (:func:`lanes_for`) and the Dask tasks get the same bits.
    """
    acc = np.zeros(F.shape[1], dtype=np.float64)
    sb = 0.0
    for r in range(F.shape[0]):
        c = counts[r]
        for f in range(F.shape[1]):
            x = np.float64(F[r, f])
            acc[f] += c * (x * x)
        x = np.float64(b[r])
        sb += c * (x * x)
    sf = 0.0
    for f in range(F.shape[1]):
        sf += acc[f]
    return sf, sb


#: Tags of the keyed streams (:func:`dmf.kernels._rng.stream_key`) a fit shuffles with.
SHUFFLE, CHUNKS, STRATA = 1, 2, 3


@njit(nogil=True, cache=False)
def strata_order(seed: int, epoch: int, d: int) -> np.ndarray:
    """The order of an epoch's ``d`` strata: stratum ``s`` holds blocks ``(i, (i + s) % d)``."""
    order = np.arange(d)
    shuffle(stream_key(seed, STRATA, epoch, 0, 0), order)
    return order


_KERNELS: dict[tuple[str, int], Any] = {}
_KERNELS_LOCK = threading.RLock()  # lanes compile their passes inside


def _compiled(kind: str, rank: int, make: Any) -> Any:
    fn = _KERNELS.get((kind, rank))
    if fn is None:
        with _KERNELS_LOCK:
            fn = _KERNELS.get((kind, rank))
            if fn is None:
                fn = _KERNELS[kind, rank] = make(int(rank))
    return fn


def kernel_for(rank: int) -> Any:
    """:data:`sgd_block` compiled for one rank (compiled once per process, on first use)."""
    return _compiled("pass", rank, _make_kernel)


def _reference_sgd_block(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    visit: np.ndarray,
    P: np.ndarray,
    Q: np.ndarray,
    bu: np.ndarray,
    bi: np.ndarray,
    mu: float,
    lr: float,
    reg: float,
    reg_bias: float,
    biases: bool,
) -> float:
    """Plain-Python float64 SGD over the ratings ``visit`` lists, in that order (in place)."""
    sse = 0.0
    for t in visit:
        u, i, r = int(users[t]), int(items[t]), float(ratings[t])
        pu = [float(x) for x in P[u]]
        qi = [float(x) for x in Q[i]]
        pred = mu + float(bu[u]) + float(bi[i]) + sum(a * b for a, b in zip(pu, qi, strict=True))
        e = r - pred
        sse += e * e
        if biases:
            bu[u] = float(bu[u]) + lr * (e - reg_bias * float(bu[u]))
            bi[i] = float(bi[i]) + lr * (e - reg_bias * float(bi[i]))
        P[u] = [a + lr * (e * b - reg * a) for a, b in zip(pu, qi, strict=True)]
        Q[i] = [b + lr * (e * a - reg * b) for a, b in zip(pu, qi, strict=True)]
    return sse
