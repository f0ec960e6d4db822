"""SGD kernel for biased matrix factorisation over one block of ratings (no Dask here).

One call makes one pass over one block of a DSGD grid: the ratings of users
``U`` (rows of ``P``) on items ``I`` (rows of ``Q``), stored as three
contiguous arrays of local indices and values. The block's ratings are kept
grouped by *tile* (a range of users x a range of items whose factor rows fit
in the L2 cache together), in a seeded shuffled order within each tile. A pass
visits the tiles in a random order and, within a tile, its chunks of
:data:`CHUNK` ratings in a random order (both drawn per epoch by the caller,
:func:`visit_segments`): reads of the rating arrays stay contiguous, the
factor rows being updated stay in cache, and the visiting order changes from
epoch to epoch.

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

__all__ = [
    "CHUNK",
    "kernel_for",
    "penalty_sums",
    "sgd_block",
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
    order = np.argsort(tid, kind="stable")
    n_tiles = int(tid.max()) + 1 if tid.size else 1
    offsets = np.zeros(n_tiles + 1, dtype=np.int64)
    np.cumsum(np.bincount(tid, minlength=n_tiles), out=offsets[1:])
    return order, offsets


def visit_segments(
    tiles: np.ndarray, rng: np.random.Generator, chunk: int = CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` int64 arrays: the contiguous rating ranges a pass visits, in order.

    Tiles in a random order; within each tile, its chunks in a random order.
    """
    los, his = [], []
    for t in rng.permutation(len(tiles) - 1):
        a, b = int(tiles[t]), int(tiles[t + 1])
        if b > a:
            lo = rng.permutation(np.arange(a, b, chunk, dtype=np.int64))
            los.append(lo)
            his.append(np.minimum(lo + chunk, b))
    if not los:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(los), np.concatenate(his)


def visit_order(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The rating indices a pass over segments ``(lo, hi)`` visits, in order."""
    parts = [np.arange(a, b) for a, b in zip(lo, hi, strict=True)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to pull ``arr[idx]``'s cache line in (LLVM ``prefetch``, for writing)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
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


def _make_kernel(K: int):
    """The SGD pass, compiled for rank ``K`` as a constant (``K = 0``: any rank).

    With the rank known at compile time LLVM unrolls and vectorises the two
    row loops completely (measured at rank 64: 28 vs 51 ns per rating).
    """

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
                    dot = dt(0.0)
                    dot2 = dt(0.0)
                    for f in range(k):
                        dot += P[u, f] * Q[i, f]
                        dot2 += P[u2, f] * Q[i2, f]
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
                dot = dt(0.0)
                for f in range(k):
                    dot += P[u, f] * Q[i, f]
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

_KERNELS: dict[int, Any] = {}
_KERNELS_LOCK = threading.Lock()


def kernel_for(rank: int) -> Any:
    """:data:`sgd_block` compiled for one rank (compiled once per process, on first use)."""
    fn = _KERNELS.get(rank)
    if fn is None:
        with _KERNELS_LOCK:
            fn = _KERNELS.get(rank)
            if fn is None:
                fn = _KERNELS[rank] = _make_kernel(int(rank))
    return fn


@njit(nogil=True, cache=False, fastmath=True)
def penalty_sums(F: np.ndarray, b: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """``(sum_r counts[r] * |F[r]|^2, sum_r counts[r] * b[r]^2)``, accumulated in float64."""
    sf = 0.0
    sb = 0.0
    for r in range(F.shape[0]):
        s = 0.0
        for f in range(F.shape[1]):
            x = np.float64(F[r, f])
            s += x * x
        x = np.float64(b[r])
        sf += counts[r] * s
        sb += counts[r] * x * x
    return sf, sb


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
