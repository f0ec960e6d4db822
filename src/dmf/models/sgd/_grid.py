"""The DSGD grid: a fit's ratings cut into ``d x d`` blocks of cache-sized tiles.

User blocks and item blocks are balanced by nnz (:func:`_grid_edges`). Each
row block of the ratings is split into its pieces of every grid cell, and
each cell merges its pieces, shuffles them once from ``(seed, i, j)`` and
groups them by tile (:func:`dmf.kernels._sgd.tile_offsets`). The same
functions build the grid as values in-process or as persisted Dask tasks
(:class:`dmf.engine.Engine`); in-process, :attr:`Grid.flat` also lays the
blocks end to end for the lanes (:mod:`dmf.kernels._lanes`).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from dmf._errors import ParameterError
from dmf.data._blocks import RowBlock, balanced_edges
from dmf.data._ratings import Ratings
from dmf.engine import Engine
from dmf.engine._compute import key, n_threads
from dmf.kernels._rng import permutation, stream_key
from dmf.kernels._sgd import SHUFFLE, tile_offsets

__all__ = ["Grid", "GridBlock", "LocalGrid", "grid_and_seed", "initial_factors"]

# Tag of the initial factors' numpy stream (the shuffles' tags: dmf.kernels._sgd).
_INIT = 0


def grid_and_seed(
    grid: int | None, seed: int | None, saved: dict[str, Any] | None, ratings: Ratings
) -> tuple[int, int]:
    """A fit's grid side (as given, else the checkpoint's, else the thread count) and seed.

    Raises :class:`dmf.ParameterError` for a grid with more blocks per side
    than the data has users or items. ``seed=None`` draws one.
    """
    if grid is not None:
        d = int(grid)
    elif saved is not None and "grid" in saved:
        d = int(saved["grid"])
    else:
        d = min(max(1, n_threads()), ratings.n_users, ratings.n_items)
    limit = min(ratings.n_users, ratings.n_items)
    if d > limit:
        who = "users" if ratings.n_users <= ratings.n_items else "items"
        raise ParameterError(
            f"grid={d} is not allowed: grid must be an integer in [1, {limit}] "
            f"(the training data has {ratings.n_users} users and {ratings.n_items} items; "
            f"a grid cannot have more blocks per side than it has {who})"
        )
    if seed is None:
        return d, int(np.random.SeedSequence().entropy % (2**32))
    return d, int(seed)


def initial_factors(
    ratings: Ratings, seed: int, rank: int, kpad: int, scale: float, dt: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded normal factors (independent of the grid), padded with zero columns to ``kpad``."""
    rng = np.random.default_rng([seed, _INIT])
    P = np.zeros((ratings.n_users, kpad), dtype=dt)
    Q = np.zeros((ratings.n_items, kpad), dtype=dt)
    P[:, :rank] = rng.normal(0.0, scale, (ratings.n_users, rank))
    Q[:, :rank] = rng.normal(0.0, scale, (ratings.n_items, rank))
    return P, Q


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
    pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
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
    engine: Engine | None = None,
) -> list[list[Any]]:
    """``d x d`` nested list of :class:`GridBlock` (``grid[i][j]``), built by ``engine``.

    ``tile``: users (and items) per cache tile (:func:`dmf.kernels._sgd.tile_rows`).
    With a graph engine (the default) the blocks are persisted Dask objects;
    with a local one, values.
    """
    engine = engine or Engine(local=False)
    d = len(row_edges) - 1
    token = key("", [getattr(b, "key", None) for b in ratings.blocks], row_edges, col_edges,
                seed, dtype, tile)  # fmt: skip
    blocks = engine.values(ratings.blocks, RowBlock)
    split = engine.map(
        "dsgd-split", _split_row_block, blocks, shared=(row_edges, col_edges), token=token
    )
    starts, stops = ratings.row_edges[:-1], ratings.row_edges[1:]
    cells: list[tuple[Any, ...]] = []
    for i, j in itertools.product(range(d), range(d)):
        # Only the row blocks overlapping user block i hold pieces of its cells.
        pieces = [
            p[i * d + j]
            for p, a, b in zip(split, starts, stops, strict=True)
            if a < row_edges[i + 1] and b > row_edges[i]
        ]
        cells.append((i, j, int(row_edges[i]), int(col_edges[j]),
                      int(col_edges[j + 1] - col_edges[j]), pieces))  # fmt: skip
    merged = engine.map(
        "dsgd-grid",
        lambda c, s, dt, t: _merge_cell(*c[:5], s, dt, t, c[5]),
        cells,
        shared=(seed, dtype, tile),
        token=token,
    )
    (merged,) = engine.persist(merged)
    return [list(merged[i * d : (i + 1) * d]) for i in range(d)]


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


def _flatten(blocks: list[list[GridBlock]]) -> LocalGrid:
    """The blocks' arrays one after the other, with their offsets (the lanes' layout)."""
    flat = [b for row in blocks for b in row]
    boff = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum([b.nnz for b in flat], out=boff[1:])
    data = [np.concatenate([getattr(b, a) for b in flat]) for a in ("users", "items", "ratings")]
    toff = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum([len(b.tiles) for b in flat], out=toff[1:])
    tiles = (np.concatenate([b.tiles for b in flat]), toff)
    return LocalGrid(blocks, (*data, boff), tiles)


@dataclass(frozen=True, eq=False)
class Grid:
    """A fit's grid: ``blocks[i][j]`` (values or persisted Dask objects) and its edges."""

    blocks: list[list[Any]]
    row_edges: np.ndarray
    col_edges: np.ndarray

    @classmethod
    def build(
        cls, engine: Engine, ratings: Ratings, d: int, seed: int, dtype: str, tile: int
    ) -> Grid:
        row_edges = _grid_edges(ratings.user_counts, d)
        col_edges = _grid_edges(ratings.item_counts, d)
        blocks = _build_grid(ratings, row_edges, col_edges, seed, dtype, tile, engine)
        return cls(blocks, row_edges, col_edges)

    @property
    def d(self) -> int:
        return len(self.blocks)

    @functools.cached_property
    def flat(self) -> LocalGrid:
        """The in-process layout the lanes read (blocks must be values)."""
        return _flatten(self.blocks)
