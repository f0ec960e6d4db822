"""Evaluation of a model whose arrays live on the workers or in a store.

Each test block is scored against the model restricted to the users that
block covers (:func:`dmf.core._lazy.user_slices`), built in a task from the
slices of the lazy arrays: no graph carries a factor matrix and none is
gathered in the client. Test blocks are shifted to start at row 0, so the
per-block functions index the restricted arrays with local codes.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf.core._lazy import user_slices
from dmf.data._blocks import RowBlock
from dmf.data._ratings import Ratings
from dmf.engine._compute import key
from dmf.evaluation._ranking import rank_partial

__all__ = ["error_parts", "rank_parts", "views_of"]


def views_of(model: Any, test: Ratings, umap: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """Per test block: the model holding only the users it covers, and its local user map."""
    ranges, maps = [], []
    for a, b in zip(test.row_edges[:-1], test.row_edges[1:], strict=True):
        codes = umap[a:b]
        known = codes[codes >= 0]
        lo, hi = (int(known.min()), int(known.max()) + 1) if len(known) else (0, 0)
        ranges.append((lo, hi))
        maps.append(np.where(codes >= 0, codes - lo, -1))
    return list(zip(user_slices(model, ranges, "eval-model"), maps, strict=True))


def _local(block: RowBlock) -> RowBlock:
    return RowBlock(0, block.n_rows, block.n_items, block.rows, block.cols, block.data, block.ts)


def _shift_users(out: Any, start: int) -> Any:
    if isinstance(out, pd.DataFrame):
        out = out.assign(user=out["user"].to_numpy() + start)
    return out


def error_on_view(func: Any, block: RowBlock, view: Any, umap: np.ndarray, *args: Any) -> Any:
    """``func`` on one test block against a model restricted to the block's users."""
    return _shift_users(func(_local(block), view, umap, *args), block.start)


def rank_on_view(block: RowBlock, excl: Any, view: Any, umap: np.ndarray, *args: Any) -> Any:
    """:func:`rank_partial` on one test block against a model holding the block's users."""
    return _shift_users(rank_partial(_local(block), excl, view, umap, *args), block.start)


def error_parts(
    func: Any,
    test: Ratings,
    views: list[tuple[Any, np.ndarray]],
    d_imap: Any,
    cold_start: str,
    clip: bool,
    per_user: bool,
) -> list[Any]:
    """One lazy ``eval-block`` task per test block (``func``: an error partial)."""
    return [
        dask.delayed(error_on_view)(
            func,
            b,
            v,
            u,
            d_imap,
            cold_start,
            clip,
            per_user,
            dask_key_name=key("eval-block", b.key, v.key, cold_start, clip, per_user),
        )
        for b, (v, u) in zip(test.blocks, views, strict=True)
    ]


def rank_parts(
    test: Ratings,
    excl: list[Any],
    views: list[tuple[Any, np.ndarray]],
    d_imap: Any,
    ks: np.ndarray,
    threshold: float | None,
    do_auc: bool,
    per_user: bool,
    d_beyond: Any,
) -> list[Any]:
    """One lazy ``eval-rank-block`` task per test block."""
    return [
        dask.delayed(rank_on_view)(
            b,
            ex,
            v,
            u,
            d_imap,
            ks,
            threshold,
            do_auc,
            per_user,
            d_beyond,
            dask_key_name=key(
                "eval-rank-block",
                b.key,
                getattr(ex, "key", None),
                v.key,
                ks,
                threshold,
                do_auc,
                per_user,
                d_beyond.key,
            ),
        )
        for b, ex, (v, u) in zip(test.blocks, excl, views, strict=True)
    ]
