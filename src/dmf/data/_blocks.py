"""Blocks of a ratings matrix as plain NumPy arrays, and the arithmetic of block edges.

A :class:`RowBlock` holds the ratings of a contiguous range of users, sorted by
(user, item); it is what one Dask task of a :class:`dmf.Ratings` holds. Solvers
turn row blocks into :class:`CSR` blocks once per fit: ``row_csr`` for the user
side and, through ``col_pieces`` + ``merge_col_pieces``, item-major CSR blocks
for the item side. Nothing here imports Dask.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import sparse

__all__ = ["CSR", "RowBlock", "balanced_edges", "col_pieces", "merge_col_pieces"]


@dataclass(frozen=True, eq=False)
class _Rows:
    """The rows ``start <= r < stop`` of a matrix, and the ``data`` of their entries."""

    start: int
    stop: int
    if TYPE_CHECKING:  # a field of each block type, after its own fields
        data: np.ndarray

    @property
    def n_rows(self) -> int:
        return self.stop - self.start

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])


@dataclass(frozen=True, eq=False)
class RowBlock(_Rows):
    """Ratings of users ``start <= u < stop``, sorted by (user, item).

    ``rows`` are local (``u - start``), ``cols`` are global item codes.
    ``ts`` holds int64 timestamps (seconds) or is ``None``.
    """

    n_items: int
    rows: np.ndarray
    cols: np.ndarray
    data: np.ndarray
    ts: np.ndarray | None = None

    def indptr(self) -> np.ndarray:
        counts = np.bincount(self.rows, minlength=self.n_rows)
        indptr = np.zeros(self.n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr

    def csr(self) -> CSR:
        """The block as CSR arrays over its users (columns are global item codes)."""
        return CSR(self.start, self.stop, self.n_items, self.indptr(), self.cols, self.data)

    def to_coo(self) -> sparse.COO:
        coords = np.stack([self.rows.astype(np.int64), self.cols.astype(np.int64)])
        return sparse.COO(
            coords,
            self.data,
            shape=(self.n_rows, self.n_items),
            has_duplicates=False,
            sorted=True,
            prune=False,
        )

    def take(self, mask: np.ndarray) -> RowBlock:
        """The ratings where ``mask`` is true, in the same block."""
        ts = None if self.ts is None else self.ts[mask]
        return RowBlock(
            self.start,
            self.stop,
            self.n_items,
            self.rows[mask],
            self.cols[mask],
            self.data[mask],
            ts,
        )

    def user_codes(self) -> np.ndarray:
        return self.rows.astype(np.int64) + self.start


@dataclass(frozen=True, eq=False)
class CSR(_Rows):
    """Compressed sparse rows for rows ``start <= r < stop`` of a matrix with ``n_cols`` columns.

    For the user side a row is a user and ``indices`` are item codes; for the item
    side (built by :func:`merge_col_pieces`) a row is an item and ``indices`` are
    user codes. ``indices`` are sorted within each row.
    """

    n_cols: int
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    def to_scipy(self):  # pragma: no cover - debugging aid
        import scipy.sparse as sp

        return sp.csr_array((self.data, self.indices, self.indptr), (self.n_rows, self.n_cols))


def balanced_edges(counts: np.ndarray, n_blocks: int) -> np.ndarray:
    """Cut ``len(counts)`` rows into at most ``n_blocks`` contiguous blocks of about equal nnz.

    Returns int64 edges ``[0, ..., len(counts)]``, strictly increasing. Each cut is
    placed at the row boundary whose cumulative count is nearest the ideal one,
    so a block exceeds the mean only by at most one row's count.
    """
    n = int(counts.shape[0])
    if n == 0:
        return np.array([0, 0], dtype=np.int64)
    n_blocks = max(1, min(int(n_blocks), n))
    cum = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    total = int(cum[-1])
    if total == 0 or n_blocks == 1:
        return np.array([0, n], dtype=np.int64)
    targets = total * np.arange(1, n_blocks, dtype=np.float64) / n_blocks
    right = np.searchsorted(cum, targets, side="left").clip(1, n)
    left = right - 1
    nearest = np.where(targets - cum[left] <= cum[right] - targets, left, right)
    edges = np.unique(np.concatenate([[0], nearest, [n]]).astype(np.int64))
    return edges


def col_pieces(block: RowBlock, col_edges: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """Split a row block by item ranges: one ``(items, users, data)`` triple per range.

    Items and users are global codes; each piece is sorted by (item, user).
    """
    users = block.user_codes()
    order = np.lexsort((users, block.cols))
    cols = block.cols[order]
    users = users[order]
    data = block.data[order]
    cuts = np.searchsorted(cols, col_edges)
    return [
        (cols[a:b], users[a:b].astype(np.int32), data[a:b]) for a, b in itertools.pairwise(cuts)
    ]


def merge_col_pieces(start: int, stop: int, n_users: int, *pieces: tuple[np.ndarray, ...]) -> CSR:
    """Item-major CSR for items ``start <= i < stop`` from the pieces of every row block.

    Pieces come in row-block order, so user codes stay sorted within each item
    after a stable sort by item.
    """
    items = np.concatenate([p[0] for p in pieces]) if pieces else np.empty(0, np.int32)
    users = np.concatenate([p[1] for p in pieces]) if pieces else np.empty(0, np.int32)
    data = np.concatenate([p[2] for p in pieces]) if pieces else np.empty(0, np.float32)
    order = np.argsort(items, kind="stable")
    items, users, data = items[order], users[order], data[order]
    counts = np.bincount(items - start, minlength=stop - start)
    indptr = np.zeros(stop - start + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return CSR(start, stop, n_users, indptr, users.astype(np.int32), data)
