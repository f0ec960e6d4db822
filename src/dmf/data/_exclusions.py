"""Per-user item lists as CSR blocks: what recommend and ranking metrics leave out.

Built per target row block from a :class:`dmf.Ratings` (normally the training
set), matched by original id so the two may have different id maps and blocks.
"""

from __future__ import annotations

import itertools
from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf.data._blocks import RowBlock
from dmf.engine._compute import key

__all__ = ["empty_csr", "exclusion_blocks", "take_rows"]


def _csr(rows: np.ndarray, items: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(indptr, indices)`` from (local row, item) pairs, rows in any order."""
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=n_rows) if len(rows) else np.zeros(n_rows, np.int64)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, np.ascontiguousarray(items[order], dtype=np.int32)


def empty_csr(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(n_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)


def take_rows(
    indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The CSR restricted to ``rows`` (in that order); a row ``-1`` is an empty row."""
    rows = np.asarray(rows, dtype=np.int64)
    safe = np.where(rows >= 0, rows, 0)
    starts = indptr[safe]
    lengths = np.where(rows >= 0, indptr[safe + 1] - starts, 0)
    new_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_ptr[1:])
    total = int(new_ptr[-1])
    if total == 0:
        return new_ptr, np.zeros(0, dtype=np.int32)
    gather = np.repeat(starts - new_ptr[:-1], lengths) + np.arange(total, dtype=np.int64)
    return new_ptr, indices[gather]


# ---------------------------------------------------------- exclusion lists
def _excl_same(block: RowBlock, item_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exclusion CSR of a block whose rows are already the target rows."""
    items = item_map[block.cols]
    keep = items >= 0
    return _csr(block.rows[keep], items[keep], block.n_rows)


def _excl_split(
    block: RowBlock, tgt_of_src: np.ndarray, item_map: np.ndarray, tgt_edges: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cut one source block's (target user, model item) pairs by target row block."""
    tgt = tgt_of_src[block.user_codes()]
    items = item_map[block.cols]
    keep = (tgt >= 0) & (items >= 0)
    tgt, items = tgt[keep], items[keep]
    order = np.argsort(tgt, kind="stable")
    tgt, items = tgt[order], items[order]
    cuts = np.searchsorted(tgt, tgt_edges)
    return [(tgt[a:b], items[a:b]) for a, b in itertools.pairwise(cuts)]


def _excl_merge(start: int, stop: int, *pieces: Any) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate([p[0] for p in pieces]) - start if pieces else np.zeros(0, np.int64)
    items = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int64)
    return _csr(rows.astype(np.int64), items, stop - start)


def exclusion_blocks(
    exclude: Any, model: Any, tgt_users: pd.Index, tgt_edges: np.ndarray
) -> list[Any]:
    """One lazy exclusion CSR ``(indptr, indices)`` per target row block.

    Rows are the target's local rows (``tgt_users`` codes minus the block
    start), indices the model's item codes of the items each user rated in
    ``exclude`` (items unseen by the model dropped: they are never candidates).
    Users are matched by original id, so ``exclude`` may have its own id maps
    and row blocks. ``exclude=None`` gives ``None`` per block (nothing masked).
    """
    tgt_edges = np.asarray(tgt_edges, dtype=np.int64)
    n_tgt = len(tgt_edges) - 1
    if exclude is None:
        return [None] * n_tgt
    item_map = model._item_codes(exclude.items)
    d_items = dask.delayed(item_map, pure=True)
    if exclude.users.equals(tgt_users) and np.array_equal(exclude.row_edges, tgt_edges):
        return [
            dask.delayed(_excl_same)(b, d_items, dask_key_name=key("exclude-csr", b.key, d_items))
            for b in exclude.blocks
        ]
    tgt_of_src = tgt_users.get_indexer(exclude.users).astype(np.int64)
    d_tgt = dask.delayed(tgt_of_src, pure=True)
    token = key("", [b.key for b in exclude.blocks], d_items.key, d_tgt.key, tgt_edges)
    pieces = [
        dask.delayed(_excl_split, nout=n_tgt)(
            b, d_tgt, d_items, tgt_edges, dask_key_name=f"exclude-split{token}-{s}"
        )
        for s, b in enumerate(exclude.blocks)
    ]
    return [
        dask.delayed(_excl_merge)(
            int(tgt_edges[t]),
            int(tgt_edges[t + 1]),
            *[p[t] for p in pieces],
            dask_key_name=f"exclude-merge{token}-{t}",
        )
        for t in range(n_tgt)
    ]
