"""Ratings built from cleaned partitions: id maps, row blocks balanced by count."""

from __future__ import annotations

import operator
import threading
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf._errors import RatingsError, first_rows
from dmf.data._blocks import RowBlock, balanced_edges
from dmf.data._clean import _clean_part, _find_rows, _Part, _py, _Spec, _summary
from dmf.data._ratings import Ratings, default_n_blocks
from dmf.engine._compute import key, persist


def _id_index(counts: list[pd.Series], what: str) -> tuple[pd.Index, np.ndarray]:
    merged = pd.concat(counts).groupby(level=0, sort=False).sum()
    ids = merged.index
    try:
        order = np.argsort(ids.to_numpy(), kind="stable")
    except TypeError as e:
        kinds = pd.Series([type(_py(v)).__name__ for v in ids]).value_counts()
        shown = ", ".join(f"{n} {k}" for k, n in kinds.items())
        raise RatingsError(
            f"{what} ids mix types that cannot be ordered ({len(ids)} distinct ids: {shown}); "
            f"convert the {what} column to one type, e.g. .astype(str)"
        ) from e
    ids = ids[order]
    counts_arr = merged.to_numpy()[order].astype(np.int64)
    return pd.Index(ids, name=what, tupleize_cols=False), counts_arr


def _head(part: _Part) -> tuple[int, Any]:
    """A partition's row count and invalid-row summary (the small part of its summary)."""
    return part.n_rows, part.bad


def _counts(part: _Part) -> tuple[pd.Series, pd.Series]:
    return part.ucounts, part.icounts


def _id_maps(*counts: tuple[pd.Series, pd.Series]) -> tuple[pd.Index, pd.Index, np.ndarray]:
    """In a task: the sorted user and item id maps and the per-user counts."""
    users, ucounts = _id_index([c[0] for c in counts], "user")
    items, _ = _id_index([c[1] for c in counts], "item")
    return users, items, ucounts


#: The id maps arrive in a worker as fresh objects whose hash tables pandas builds
#: lazily and not thread-safely: the first lookup in each process builds them under this.
_TABLES = threading.Lock()


def _split_part(
    part: _Part, users: pd.Index, items: pd.Index, row_edges: np.ndarray
) -> list[tuple[np.ndarray, ...]]:
    with _TABLES:
        _ = users.is_unique and items.is_unique
    uc = users.get_indexer(part.u)
    ic = items.get_indexer(part.i).astype(np.int32)
    blk = np.searchsorted(row_edges, uc, side="right") - 1
    # Block ids fit in 16 bits almost always: numpy's stable sort is then a radix
    # sort, several times faster than the merge sort used for wider integers.
    small = np.int16 if len(row_edges) <= np.iinfo(np.int16).max else np.int32
    order = np.argsort(blk.astype(small), kind="stable")
    cuts = np.searchsorted(blk[order], np.arange(len(row_edges)))
    out = []
    for b in range(len(row_edges) - 1):
        sel = order[cuts[b] : cuts[b + 1]]
        rows = (uc[sel] - row_edges[b]).astype(np.int32)
        t = None if part.t is None else part.t[sel]
        out.append((rows, ic[sel], part.r[sel], t))
    return out


def _build_block(
    start: int, stop: int, n_items: int, duplicates: str, *pieces: tuple[np.ndarray, ...]
) -> tuple[RowBlock, tuple[int, int, list[tuple[int, int]]]]:
    rows = np.concatenate([p[0] for p in pieces]) if pieces else np.empty(0, np.int32)
    cols = np.concatenate([p[1] for p in pieces]) if pieces else np.empty(0, np.int32)
    data = np.concatenate([p[2] for p in pieces]) if pieces else np.empty(0, np.float32)
    has_t = bool(pieces) and pieces[0][3] is not None
    ts = np.concatenate([p[3] for p in pieces]) if has_t else None
    keys = rows.astype(np.int64) * n_items + cols
    # Unique keys sort the same with any algorithm, so try the (faster) unstable
    # sort first; only when there are duplicates does input order matter
    # ("last" keeps the last row), and the stable sort is redone.
    order = np.argsort(keys)
    k = keys[order]
    new = np.ones(len(k), dtype=bool)
    new[1:] = k[1:] != k[:-1]
    starts = np.flatnonzero(new)
    n_extra = len(k) - len(starts)
    if n_extra:
        order = np.argsort(keys, kind="stable")
        k = keys[order]
    dup_info: tuple[int, int, list[tuple[int, int]]] = (0, 0, [])
    if n_extra == 0:
        sel = order
        data, ts = data[sel], (None if ts is None else ts[sel])
    else:
        sizes = np.diff(np.append(starts, len(k)))
        dup_starts = starts[sizes > 1]
        pairs = [(int(k[s] // n_items) + start, int(k[s] % n_items)) for s in dup_starts[:5]]
        dup_info = (int((sizes > 1).sum()), n_extra, pairs)
        if duplicates in ("raise", "last"):
            sel = order[np.append(starts[1:], len(k)) - 1]
            data, ts = data[sel], (None if ts is None else ts[sel])
        else:
            summed = np.add.reduceat(data[order].astype(np.float64), starts)
            if duplicates == "mean":
                summed /= sizes
            sel = order[starts]
            data = summed.astype(np.float32)
            ts = None if ts is None else np.maximum.reduceat(ts[order], starts)
    block = RowBlock(start, stop, n_items, rows[sel], cols[sel], data, ts)
    return block, dup_info


def _check_known(counts: list[pd.Series], index: pd.Index, what: str) -> None:
    """Raise unless every id seen in ``counts`` is in the fixed id map ``index``."""
    merged = pd.concat(counts).groupby(level=0, sort=False).sum()
    try:
        codes = index.get_indexer(merged.index)
    except TypeError as e:
        raise RatingsError(f"{what} ids cannot be matched to the given id map: {e}") from e
    unknown = codes < 0
    if unknown.any():
        bad = merged.index[unknown]
        raise RatingsError(
            f"{len(bad)} {what} id(s) ({int(merged.to_numpy()[unknown].sum())} rows) are not in "
            f"the given id map; first: {first_rows(bad)}"
        )


def _build(
    partitions: Sequence[Any],
    spec: _Spec,
    chunk_nnz: int | None,
    layout: tuple[pd.Index, pd.Index, np.ndarray] | None = None,
) -> Ratings:
    """The three-pass build (module docstring) over lazy pandas partitions.

    ``layout=(users, items, row_edges)`` fixes the id maps and row edges instead
    of deriving them from the data (e.g. a train/test pair sharing one layout);
    ids outside the maps are an error.
    """
    clean = [
        dask.delayed(_clean_part)(p, spec, dask_key_name=key("ratings-clean", p, spec, k))
        for k, p in enumerate(partitions)
    ]
    (clean,) = persist(clean)
    if layout is None:
        # The per-partition id counts stay on the workers: one task merges them into
        # the id maps (below), which the split tasks then read there; the client
        # fetches the maps once (it holds them) but never sends them back in a graph.
        summaries = dask.compute([dask.delayed(_head)(c) for c in clean])[0]
    else:
        summaries = dask.compute([dask.delayed(_summary)(c) for c in clean])[0]
    n_read = sum(s[0] for s in summaries)
    offsets = np.concatenate([[0], np.cumsum([s[0] for s in summaries])]).astype(np.int64)
    n_bad = sum(s[1][0] for s in summaries)
    report: dict[str, Any] = {"rows_read": int(n_read), "invalid_dropped": 0}
    if n_read == 0:
        raise RatingsError("no ratings: the input is empty (0 rows)")
    if n_bad:
        why: dict[str, int] = {}
        samples = []
        for s, off in zip(summaries, offsets, strict=False):
            for w, c in s[1][1].items():
                why[w] = why.get(w, 0) + c
            samples.extend((int(off) + p, w, row) for p, w, row in s[1][2])
        detail = "; ".join(f"{c} {w}" for w, c in why.items())
        if spec.on_invalid == "raise":
            shown = first_rows(f"row {p} ({w}): {row}" for p, w, row in samples[:5])
            raise RatingsError(
                f"{n_bad} of {n_read} rows are invalid ({detail}); first: {shown}. "
                "Fix them, or pass on_invalid='drop' to drop them (the count is kept in .report)."
            )
        report["invalid_dropped"] = int(n_bad)
        report["invalid_reasons"] = why
    if n_bad == n_read:
        raise RatingsError(f"no ratings left: all {n_read} rows are invalid")
    if layout is None:
        counts = [
            dask.delayed(_counts)(c, dask_key_name=key("ratings-counts", c.key)) for c in clean
        ]
        d_maps = dask.delayed(_id_maps)(
            *counts, dask_key_name=key("ratings-ids", [c.key for c in clean])
        )
        (d_maps,) = persist(d_maps)
        users, items, ucounts = d_maps.compute()
        n_blocks = default_n_blocks(
            int(ucounts.sum()), chunk_nnz, int(ucounts.max()) if len(ucounts) else 0
        )
        row_edges = balanced_edges(ucounts, n_blocks)
    else:
        users, items, row_edges = layout
        row_edges = np.asarray(row_edges, dtype=np.int64)
        _check_known([s[2] for s in summaries], users, "user")
        _check_known([s[3] for s in summaries], items, "item")
    n_blocks = len(row_edges) - 1
    # pandas 2 builds an Index's hash table lazily and not thread-safely; the threaded
    # tasks below share these two, so build the tables here, once.
    if not (users.is_unique and items.is_unique):
        raise RatingsError("internal: the user or item id map holds duplicate ids")
    if layout is None:
        d_users = dask.delayed(operator.getitem)(d_maps, 0)
        d_items = dask.delayed(operator.getitem)(d_maps, 1)
    else:
        d_users = dask.delayed(users, pure=True)
        d_items = dask.delayed(items, pure=True)
    split = [
        dask.delayed(_split_part, nout=n_blocks)(
            c, d_users, d_items, row_edges, dask_key_name=key("ratings-shuffle", c.key, row_edges)
        )
        for c in clean
    ]
    built = [
        dask.delayed(_build_block, nout=2)(
            int(row_edges[b]),
            int(row_edges[b + 1]),
            len(items),
            spec.duplicates,
            *[s[b] for s in split],
            dask_key_name=key("ratings-block", [c.key for c in clean], row_edges, b),
        )
        for b in range(n_blocks)
    ]
    blocks = [b[0] for b in built]
    blocks, dups = persist(blocks, [b[1] for b in built])
    dups = dask.compute(dups)[0]
    n_pairs = sum(d[0] for d in dups)
    n_extra = sum(d[1] for d in dups)
    if n_pairs:
        if spec.duplicates == "raise":
            codes = [p for d in dups for p in d[2]][:3]
            pairs = [(users[uc], items[ic]) for uc, ic in codes]
            # One search task per partition: the error path does not collect the data either.
            found = dask.compute(
                [
                    dask.delayed(_find_rows)(c, int(o), pairs)
                    for c, o in zip(clean, offsets, strict=False)
                ]
            )[0]
            shown = []
            for k, pair in enumerate(pairs):
                rows = [r for f in found for r in f[k]]
                shown.append(f"(user={_py(pair[0])!r}, item={_py(pair[1])!r}) at rows {rows[:5]}")
            raise RatingsError(
                f"{n_pairs} (user, item) pairs occur more than once ({n_extra} extra rows); "
                f"first: {'; '.join(shown)}. Pass duplicates='last', 'mean' or 'sum' to merge them."
            )
        report["duplicates_merged"] = int(n_extra)
        report["duplicates_policy"] = spec.duplicates
    return Ratings(
        blocks,
        row_edges,
        users,
        items,
        has_timestamps=spec.timestamp is not None,
        rating_scale=spec.rating_scale,
        implicit=spec.rating is None,
        report=report,
    )
