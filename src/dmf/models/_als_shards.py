"""ALS with the factors sharded over the workers of a ``distributed.Client``.

Each side's factors (and biases) are row blocks aligned with that side's CSR
blocks, persisted on the workers between half-sweeps; the client holds their
handles and the per-block scalars (loss, penalty, a finite flag). Once per fit,
every destination block's CSR is routed (Spark's InBlock/OutBlock): for each
source block, the local indices of the source rows it reads, and a copy of the
CSR whose column indices point into the concatenation of those rows. A
half-sweep then either routes (one ``als-take`` task per (destination, source)
pair slices the rows where the source block lives and the destination's solve
fetches only them) or broadcasts (each solve reads the whole source blocks,
which Dask moves to every worker once), whichever :func:`choose` predicts
moves fewer bytes. The solve is :func:`dmf.kernels._als_block.solve_block` on
the same rows in the same order either way, so the factors are the same.
"""

from __future__ import annotations

import itertools
import operator
import weakref
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np

from dmf.engine._compute import key, persist
from dmf.kernels._als_block import SolveConfig, add, gram_part, solve_block

__all__ = ["PLANS", "ROUTING", "ShardedSide", "choose", "iteration_bytes", "route"]

#: Dask config key ``dmf.als-routing``: ``"auto"`` (default, :func:`choose`),
#: ``"route"`` or ``"broadcast"``.
ROUTING = "dmf.als-routing"


#: Per fitted model, the routing of its last sharded fit as plain numbers (for
#: :func:`iteration_bytes`): per side its mode, ``need``, block sizes and the
#: worker of each block.
PLANS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


@dataclass
class ShardedSide:
    """One side on the workers: its CSR blocks (global or routed indices) and routes."""

    name: str
    edges: np.ndarray
    csrs: list[Any]  # CSR blocks as the fit persisted them (global column indices)
    routed_csrs: list[Any] | None = None
    take_idx: list[list[Any]] | None = None  # [dest][source] -> local rows, or None
    need: np.ndarray | None = None  # (n_dest, n_source) rows each destination reads
    routed: bool = False

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.edges)


# ------------------------------------------------------------- block tasks
def _route_block(csr: Any, other_edges: np.ndarray) -> tuple[Any, list[np.ndarray], np.ndarray]:
    """The rows of each source block that ``csr`` reads, and ``csr`` re-indexed into them."""
    from dmf.data._blocks import CSR

    needed = np.unique(csr.indices)
    cuts = np.searchsorted(needed, other_edges)
    idx = [
        (needed[a:b] - other_edges[s]).astype(np.int32)
        for s, (a, b) in enumerate(itertools.pairwise(cuts))
    ]
    local = np.searchsorted(needed, csr.indices).astype(np.int32)
    routed = CSR(csr.start, csr.stop, csr.n_cols, csr.indptr, local, csr.data)
    return routed, idx, np.diff(cuts)


def _route_idx(part: tuple[Any, list[np.ndarray], np.ndarray], s: int) -> np.ndarray:
    return part[1][s]


def _take(Y: np.ndarray, b: np.ndarray | None, idx: np.ndarray) -> tuple[Any, Any]:
    return Y[idx], None if b is None else b[idx]


def _solve(
    csr: Any,
    warm: Any,
    warm_bias: Any,
    gram: Any,
    cfg: SolveConfig,
    want_loss: bool,
    n_other: int,
    pieces: list[tuple[np.ndarray, np.ndarray | None]],
) -> tuple[np.ndarray, np.ndarray | None, float, float]:
    """:func:`solve_block` on the concatenated source pieces (whole blocks or routed rows)."""
    Y = np.concatenate([p[0] for p in pieces])
    yb = None if pieces[0][1] is None else np.concatenate([p[1] for p in pieces])
    if cfg.implicit and len(Y) != n_other:
        # The frequency-scaled penalty reads n_other from Y's shape; the kernel
        # reads only the rows the routed indices name.
        Y = np.lib.stride_tricks.as_strided(Y, (n_other, Y.shape[1]), Y.strides, writeable=False)
    return solve_block(csr, warm, warm_bias, Y, yb, gram, cfg, want_loss)


def _token(obj: Any) -> Any:
    return getattr(obj, "key", obj)


def _stats(res: tuple[Any, ...]) -> tuple[bool, float, float]:
    X, b = res[0], res[1]
    ok = bool(np.isfinite(X).all()) and (b is None or bool(np.isfinite(b).all()))
    return ok and bool(np.isfinite(res[2] + res[3])), float(res[2]), float(res[3])


def init_factors(
    seed: int, scale: float, shape: tuple[int, int, int], dt: Any, nonneg: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The random initial ``(U, V)`` of ``shape = (n_users, n_items, k)``, one stream for both."""
    rng = np.random.default_rng(int(seed))
    n_users, n_items, k = shape
    U = rng.normal(0.0, scale, (n_users, k)).astype(dt)
    V = rng.normal(0.0, scale, (n_items, k)).astype(dt)
    if nonneg:
        np.abs(U, out=U)
        np.abs(V, out=V)
    return U, V


def _init_slice(full: tuple[np.ndarray, ...], side: int, a: int, b: int, csr: Any) -> np.ndarray:
    X = full[side][a:b].copy()
    X[np.diff(csr.indptr) == 0] = 0  # rows without ratings start (and stay) at zero
    return X


def _zeros(n: int, dt: Any) -> np.ndarray:
    return np.zeros(n, dt)


def _block_gram(X: np.ndarray) -> np.ndarray:
    return gram_part(0, len(X), X)


# ----------------------------------------------------------------- routing
def route(side: ShardedSide, other: ShardedSide) -> None:
    """Route ``side``'s blocks against ``other``'s (once per fit): sets the routes and counts."""
    parts = [
        dask.delayed(_route_block)(c, other.edges, dask_key_name=key(f"als-route-{side.name}", c))
        for c in side.csrs
    ]
    csrs = [dask.delayed(operator.getitem)(p, 0) for p in parts]
    idx = [[dask.delayed(_route_idx)(p, s) for s in range(len(other.csrs))] for p in parts]
    counts = [dask.delayed(operator.getitem)(p, 2) for p in parts]
    *flat, need = persist(*csrs, *itertools.chain.from_iterable(idx), counts)
    n_src = len(other.csrs)
    side.routed_csrs = list(flat[: len(csrs)])
    rest = flat[len(csrs) :]
    side.take_idx = [list(rest[d * n_src : (d + 1) * n_src]) for d in range(len(csrs))]
    side.need = np.array(dask.compute(need)[0], dtype=np.int64).reshape(len(csrs), n_src)


def choose(side: ShardedSide, other: ShardedSide, n_workers: int) -> bool:
    """Route ``side``'s half-sweeps (True) or broadcast (False).

    With blocks spread evenly over ``W`` workers a routed half-sweep moves
    ``(W-1)/W`` of the rows the destinations read, a broadcast ``W-1`` copies
    of the other side: route when the destinations read fewer than ``W``
    copies of it in all. ``dmf.als-routing`` forces either.
    """
    forced = dask.config.get(ROUTING, "auto")
    if forced in ("route", "broadcast"):
        return forced == "route"
    assert side.need is not None
    return int(side.need.sum()) < int(n_workers) * int(other.sizes.sum())


# ------------------------------------------------------------ half-sweeps
def init_state(
    users: ShardedSide,
    items: ShardedSide,
    seed: int,
    scale: float,
    k: int,
    dt: Any,
    nonneg: bool,
    implicit: bool,
) -> tuple[list[Any], ...]:
    """The initial factor blocks drawn on a worker (the same numbers as in-process)."""
    shape = (int(users.sizes.sum()), int(items.sizes.sum()), int(k))
    full = dask.delayed(init_factors)(
        seed,
        scale,
        shape,
        dt,
        nonneg,
        dask_key_name=key("als-init", seed, scale, shape, str(dt), nonneg),
    )
    out = []
    for s, side in enumerate((users, items)):
        spans = zip(itertools.pairwise(side.edges.tolist()), side.csrs, strict=True)
        X = [
            dask.delayed(_init_slice)(full, s, a, b, c, dask_key_name=key(
                f"als-init-{side.name}", full.key, c.key, j))
            for j, ((a, b), c) in enumerate(spans)
        ]  # fmt: skip
        bias = None if implicit else [
            dask.delayed(_zeros)(int(n), dt, dask_key_name=key(f"als-init-bias-{side.name}", j, n))
            for j, n in enumerate(side.sizes)
        ]  # fmt: skip
        out.append(X)
        out.append(bias)
    U, bu, V, bi = out
    persisted = persist(U, bu or [], V, bi or [])
    return (persisted[0], persisted[1] or None, persisted[2], persisted[3] or None)


def from_arrays(side: ShardedSide, X: np.ndarray, b: np.ndarray | None) -> tuple[list, Any]:
    """Blocks of resumed factors (sent from the client once, when resuming)."""
    Xs = [dask.delayed(X[a:c].copy()) for a, c in itertools.pairwise(side.edges)]
    bs = (
        None
        if b is None
        else [dask.delayed(b[a:c].copy()) for a, c in itertools.pairwise(side.edges)]
    )
    out = persist(Xs, bs or [])
    return out[0], out[1] or None


def gram(prefix: str, blocks: list[Any], token: Any) -> Any:
    """``XᵀX`` of row blocks as a tree reduction (lazy, k×k)."""
    from dmf.engine._compute import tree_reduce

    parts = [dask.delayed(_block_gram)(x, dask_key_name=key(prefix, x.key, token)) for x in blocks]
    return tree_reduce(add, parts, f"{prefix}-reduce")


def half_sweep(
    side: ShardedSide,
    other: ShardedSide,
    own: tuple[list[Any], Any],
    fixed: tuple[list[Any], Any],
    cfg: SolveConfig,
    it: int,
    want_loss: bool,
) -> tuple[list[Any], Any, list[tuple[bool, float, float]], Any]:
    """Solve every block of ``side`` on the workers: new blocks, their stats, the gram used."""
    Ys, bs = fixed
    bs = bs if bs is not None else [None] * len(Ys)
    g = gram(f"als-gram-{side.name}", Ys, it) if cfg.implicit else None
    warm = cfg.cg or cfg.nonnegative
    n_other = int(other.sizes.sum())
    name = side.name
    src = [y.key for y in Ys]
    results = []
    for d, csr in enumerate(side.csrs):
        if side.routed:
            assert (
                side.take_idx is not None and side.routed_csrs is not None and side.need is not None
            )
            csr = side.routed_csrs[d]
            pieces = [
                dask.delayed(_take)(Ys[s], bs[s], side.take_idx[d][s], dask_key_name=key(
                    f"als-take-{name}", Ys[s].key, side.take_idx[d][s].key, d, s))
                for s in range(len(Ys)) if side.need[d, s] > 0
            ]  # fmt: skip
            if not pieces:  # a block with no ratings reads nothing: give it an empty piece
                pieces = [dask.delayed(_take)(Ys[0], bs[0], np.empty(0, np.int32))]
        else:
            pieces = list(zip(Ys, bs, strict=True))
        X0 = own[0][d] if warm else None
        b0 = own[1][d] if warm and own[1] is not None else None
        results.append(
            dask.delayed(_solve)(
                csr, X0, b0, g, cfg, want_loss, n_other, pieces,
                dask_key_name=key(
                    f"als-solve-{name}", csr.key, src, _token(X0), cfg, want_loss, it, d),
            )
        )  # fmt: skip
    X = [dask.delayed(operator.getitem)(r, 0) for r in results]
    b = None if cfg.implicit else [dask.delayed(operator.getitem)(r, 1) for r in results]
    stats = [dask.delayed(_stats)(r) for r in results]
    X, b_out, stats, g = persist(X, b or [], stats, g)
    stats, g_value = dask.compute(stats, g)
    return list(X), (list(b_out) if b is not None else None), stats, g_value


def as_array(blocks: list[Any], edges: np.ndarray, k: int | None, dt: Any) -> da.Array:
    """Persisted row blocks as one dask array whose chunks are the blocks."""
    parts = [
        da.from_delayed(x, (int(b - a),) if k is None else (int(b - a), int(k)), dtype=dt)
        for x, (a, b) in zip(blocks, itertools.pairwise(edges), strict=True)
    ]
    return da.concatenate(parts, axis=0)


# ------------------------------------------------------------------ driver
def iterations(model: Any, ratings: Any, cfg: SolveConfig, start: int, saved: Any) -> Any:
    """The ALS iterations with sharded factors (``ALS._iterations`` with a Client)."""
    from dmf.engine._compute import active_client

    iedges = np.asarray(ratings.col_edges(ratings.n_blocks), np.int64)
    ucsr, icsr = persist(ratings.row_csr(), ratings.col_csr(iedges))
    users = ShardedSide("users", np.asarray(ratings.row_edges, np.int64), list(ucsr))
    items = ShardedSide("items", iedges, list(icsr))
    n_workers = max(1, len(active_client().scheduler_info()["workers"]))
    for side, other in ((users, items), (items, users)):
        route(side, other)
        side.routed = choose(side, other, n_workers)
    model.routing_ = {s.name: "route" if s.routed else "broadcast" for s in (users, items)}
    PLANS[model] = _plan(users, items)
    dt, k = np.dtype(model.dtype), int(model.rank)
    if saved is None:
        U, bu, V, bi = init_state(
            users, items, int(model.seed), model._init_scale(), k, dt, bool(model.nonnegative),
            cfg.implicit,
        )  # fmt: skip
    else:
        arrays, state = saved
        U, bu = from_arrays(
            users,
            arrays["user_factors"].astype(dt),
            None if cfg.implicit else arrays["user_bias"].astype(dt),
        )
        V, bi = from_arrays(
            items,
            arrays["item_factors"].astype(dt),
            None if cfg.implicit else arrays["item_bias"].astype(dt),
        )
        model._prev_objective = state.get("objective")
    model._state = _arrays(
        users, items, (U, bu, V, bi), k, dt, getattr(model, "_prev_objective", None)
    )
    model.n_iter_ = start
    for it in range(start, int(model.max_iter)):
        V, bi, st_i, _ = half_sweep(items, users, (V, bi), (U, bu), cfg, it, False)
        _check(model, items, st_i, it)
        U, bu, st_u, gram_v = half_sweep(users, items, (U, bu), (V, bi), cfg, it, True)
        _check(model, users, st_u, it)
        loss = float(sum(s[1] for s in st_u))
        reg = float(sum(s[2] for s in st_u) + sum(s[2] for s in st_i))
        entry: dict[str, Any] = {"iteration": it + 1}
        if cfg.implicit:
            uu = dask.compute(gram("als-gram-objective", U, it))[0]
            obj = loss + cfg.unobserved_weight * float(np.sum(uu * gram_v)) + reg
        else:
            obj = loss + reg
            entry["train_rmse"] = float(np.sqrt(loss / ratings.nnz))
        entry["objective"] = float(obj)
        model._state = _arrays(users, items, (U, bu, V, bi), k, dt, float(obj))
        model._publish()
        model.n_iter_ = it + 1
        yield entry


def _placement(blocks: list[Any]) -> list[str]:
    from distributed import futures_of

    from dmf.engine._compute import active_client

    futures = [futures_of(b)[0] for b in blocks]
    holders = active_client().who_has(futures)
    return [sorted(holders[f.key])[0] if holders.get(f.key) else "" for f in futures]


def _plan(users: ShardedSide, items: ShardedSide) -> dict[str, Any]:
    plan = {}
    for side in (users, items):
        plan[side.name] = {
            "routed": side.routed,
            "need": side.need,
            "sizes": side.sizes,
            "workers": _placement(side.csrs),
        }
    return plan


def iteration_bytes(plan: dict[str, Any], row_bytes: int) -> int:
    """Bytes one iteration moves between workers under ``plan`` (the routing model).

    A destination block solves where its CSR block lives and a source block
    lives where it was solved. Routed: the rows each destination reads from
    blocks on other workers. Broadcast: every source block to each other
    worker that solves a destination block. ``row_bytes``: a factor row and
    its bias.
    """
    total = 0
    for dest, src in (("items", "users"), ("users", "items")):
        d, s = plan[dest], plan[src]
        if d["routed"]:
            cross = np.array([[a != b for b in s["workers"]] for a in d["workers"]], bool)
            total += int((d["need"] * cross).sum()) * row_bytes
        else:
            solvers = set(d["workers"])
            for n, w in zip(s["sizes"], s["workers"], strict=True):
                total += int(n) * len(solvers - {w}) * row_bytes
    return total


def _arrays(
    users: ShardedSide, items: ShardedSide, blocks: tuple, k: int, dt: Any, obj: Any
) -> tuple:
    U, bu, V, bi = blocks
    Ua, Va = as_array(U, users.edges, k, dt), as_array(V, items.edges, k, dt)
    bua = (
        da.zeros(len(Ua), dt, chunks=Ua.chunks[0])
        if bu is None
        else as_array(bu, users.edges, None, dt)
    )
    bia = (
        da.zeros(len(Va), dt, chunks=Va.chunks[0])
        if bi is None
        else as_array(bi, items.edges, None, dt)
    )
    return Ua, bua, Va, bia, obj


def _check(model: Any, side: ShardedSide, stats: list[tuple[bool, float, float]], it: int) -> None:
    for j, (ok, _, _) in enumerate(stats):
        if not ok:
            raise model._nonfinite(side.name, int(side.edges[j]), int(side.edges[j + 1]), j, it)
