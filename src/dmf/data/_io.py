"""Building :class:`~dmf.Ratings` from pandas, Dask, CSV and Parquet, with a cleaning policy.

The build is three passes of Dask tasks over the input partitions, none of which
collects the data in one place:

1. clean each partition (check ids, ratings, timestamps; count what is invalid)
   and count ratings per user and item id;
2. from the merged counts, fix the sorted id maps and nnz-balanced row edges;
3. map ids to codes, cut each partition by row block, and merge every row
   block's pieces into a sorted :class:`~dmf.data._blocks.RowBlock`, resolving
   duplicate (user, item) pairs by the chosen policy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import pandas as pd

from dmf._errors import RatingsError, check_choice, first_rows
from dmf.data._blocks import RowBlock, balanced_edges
from dmf.data._ratings import Ratings, default_n_blocks
from dmf.engine._compute import key, persist

__all__ = ["from_dask", "from_pandas", "read_csv", "read_parquet"]

_ON_INVALID = ("raise", "drop")
_DUPLICATES = ("raise", "last", "mean", "sum")


class _Spec:
    """What the user asked for: column names and policies."""

    def __init__(
        self,
        user: Any,
        item: Any,
        rating: Any,
        timestamp: Any,
        on_invalid: str,
        duplicates: str,
        rating_scale: tuple[float, float] | None,
    ) -> None:
        check_choice("on_invalid", on_invalid, _ON_INVALID)
        check_choice("duplicates", duplicates, _DUPLICATES)
        if rating_scale is not None:
            try:
                lo, hi = (float(v) for v in rating_scale)
            except (TypeError, ValueError) as e:
                raise RatingsError(
                    f"rating_scale={rating_scale!r} must be a pair (low, high) of numbers"
                ) from e
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise RatingsError(f"rating_scale={rating_scale!r} must be finite with low < high")
            rating_scale = (lo, hi)
        names = [c for c in (user, item, rating, timestamp) if c is not None]
        if len(set(map(str, names))) != len(names):
            raise RatingsError(f"user, item, rating and timestamp columns must differ: {names}")
        self.user, self.item, self.rating, self.timestamp = user, item, rating, timestamp
        self.on_invalid, self.duplicates, self.rating_scale = on_invalid, duplicates, rating_scale

    @property
    def columns(self) -> list[Any]:
        return [c for c in (self.user, self.item, self.rating, self.timestamp) if c is not None]

    def check_columns(
        self, columns: Sequence[Any], dtypes: pd.Series, frame: pd.DataFrame | None = None
    ) -> None:
        missing = [c for c in self.columns if c not in columns]
        if missing:
            raise RatingsError(
                f"{len(missing)} of {len(self.columns)} column(s) not found: {missing}; "
                f"the data has columns {list(columns)}. "
                "Name them with user=, item=, rating= (rating=None for implicit feedback)."
            )
        if self.rating is not None:
            dt = dtypes[self.rating]
            if not (pd.api.types.is_integer_dtype(dt) or pd.api.types.is_float_dtype(dt)) or (
                pd.api.types.is_bool_dtype(dt)
            ):
                detail = ""
                if frame is not None:
                    col = frame[self.rating]
                    bad = (pd.to_numeric(col, errors="coerce").isna() & col.notna()).to_numpy()
                    if bad.any():
                        pos = np.flatnonzero(bad)
                        shown = first_rows(f"row {p} ({col.iloc[p]!r})" for p in pos)
                        detail = (
                            f" ({len(pos)} of {len(col)} values are not numbers; first: {shown})"
                        )
                raise RatingsError(
                    f"rating column {self.rating!r} has dtype {dt}, not numbers{detail}; "
                    "convert it (e.g. pd.to_numeric) or pass rating=None for implicit feedback"
                )
        if self.timestamp is not None:
            dt = dtypes[self.timestamp]
            ok = pd.api.types.is_datetime64_any_dtype(dt) or (
                pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt)
            )
            if not ok:
                raise RatingsError(
                    f"timestamp column {self.timestamp!r} has dtype {dt}; "
                    "expected numbers (seconds) or datetimes"
                )


class _Part:
    """One cleaned input partition (ids still original)."""

    __slots__ = ("bad", "i", "icounts", "kept", "n_rows", "r", "t", "u", "ucounts")

    def __init__(self, **kw: Any) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


def _as_seconds(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps as int64 seconds, and a mask of the missing ones."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        missing = col.isna().to_numpy()
        if getattr(col.dt, "tz", None) is not None:
            col = col.dt.tz_convert("UTC").dt.tz_localize(None)
        secs = col.astype("datetime64[ns]").to_numpy().astype("datetime64[s]").astype(np.int64)
        return np.where(missing, 0, secs), missing
    values = col.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = ~np.isfinite(values)
    return np.where(missing, 0, np.floor(values)).astype(np.int64), missing


def _clean_part(df: pd.DataFrame, spec: _Spec) -> _Part:
    n = len(df)
    u = df[spec.user]
    i = df[spec.item]
    reasons: list[tuple[np.ndarray, str]] = [
        (u.isna().to_numpy(), "missing user id"),
        (i.isna().to_numpy(), "missing item id"),
    ]
    if spec.rating is not None:
        raw = df[spec.rating].to_numpy(dtype=np.float64, na_value=np.nan)
        reasons.append((np.isnan(raw), "missing (NaN) rating"))
        with np.errstate(over="ignore", invalid="ignore"):
            r = raw.astype(np.float32)
        reasons.append((~np.isnan(raw) & ~np.isfinite(r), "infinite rating (or beyond float32)"))
        if spec.rating_scale is not None:
            lo, hi = spec.rating_scale
            with np.errstate(invalid="ignore"):
                out = np.isfinite(r) & ((raw < lo) | (raw > hi))
            reasons.append((out, f"rating outside rating_scale [{lo:g}, {hi:g}]"))
    else:
        r = np.ones(n, dtype=np.float32)
    t = None
    if spec.timestamp is not None:
        t, t_missing = _as_seconds(df[spec.timestamp])
        reasons.append((t_missing, "missing timestamp"))
    bad_mask = np.zeros(n, dtype=bool)
    first: list[tuple[int, str]] = []
    counts: dict[str, int] = {}
    for mask, why in reasons:
        c = int(mask.sum())
        if c:
            counts[why] = counts.get(why, 0) + c
            first.extend((int(p), why) for p in np.flatnonzero(mask & ~bad_mask)[:5])
            bad_mask |= mask
    n_bad = int(bad_mask.sum())
    first.sort()
    samples = [(p, why, df.iloc[p][spec.columns].to_dict()) for p, why in first[:5]]
    kept = None
    if n_bad:
        keep = ~bad_mask
        kept = np.flatnonzero(keep)  # input positions of the rows kept
        u, i, r = u[keep], i[keep], r[keep]
        t = None if t is None else t[keep]
    return _Part(
        kept=kept,
        u=u.to_numpy(),
        i=i.to_numpy(),
        r=r,
        t=t,
        n_rows=n,
        bad=(n_bad, counts, samples),
        ucounts=u.value_counts(sort=False),
        icounts=i.value_counts(sort=False),
    )


def _summary(part: _Part) -> tuple[int, Any, pd.Series, pd.Series]:
    return part.n_rows, part.bad, part.ucounts, part.icounts


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


def _split_part(
    part: _Part, users: pd.Index, items: pd.Index, row_edges: np.ndarray
) -> list[tuple[np.ndarray, ...]]:
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


def _py(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _find_rows(part: _Part, offset: int, pairs: list[tuple[Any, Any]]) -> list[list[int]]:
    """Input rows of one partition (counted from ``offset``) holding each (user, item) pair."""
    out = []
    for u, i in pairs:
        hit = np.flatnonzero((part.u == u) & (part.i == i))
        if part.kept is not None:
            hit = part.kept[hit]
        out.append([offset + int(h) for h in hit])
    return out


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
        users, ucounts = _id_index([s[2] for s in summaries], "user")
        items, _ = _id_index([s[3] for s in summaries], "item")
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


def from_pandas(
    df: pd.DataFrame,
    user: Any = "user",
    item: Any = "item",
    rating: Any = "rating",
    timestamp: Any = None,
    *,
    on_invalid: str = "raise",
    duplicates: str = "raise",
    rating_scale: tuple[float, float] | None = None,
    chunk_nnz: int | None = None,
) -> Ratings:
    """Build :class:`~dmf.Ratings` from a pandas DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per rating.
    user, item : column names
        Ids of any hashable type (int, str, ...); they are mapped to contiguous
        int32 codes in sorted order. Ids of mixed, unorderable types are an error.
    rating : column name or None
        Numeric ratings (stored as float32). ``None`` for implicit feedback:
        each row is an interaction worth 1 (with ``duplicates="sum"``,
        repeated interactions become counts).
    timestamp : column name or None
        Seconds (numbers) or datetimes; stored as int64 seconds, used by
        :func:`dmf.split.temporal`.
    on_invalid : {"raise", "drop"}
        Rows with a missing user/item id, a NaN/inf rating, a missing timestamp
        or a rating outside ``rating_scale``: ``"raise"`` raises
        :class:`dmf.RatingsError` naming the count and the first rows;
        ``"drop"`` drops them and records the count in ``ratings.report``.
    duplicates : {"raise", "last", "mean", "sum"}
        Repeated (user, item) pairs: raise, keep the last row (input order),
        or merge by mean or sum (the timestamp kept is the latest).
    rating_scale : (low, high), optional
        Allowed rating range; predictions are clipped to it. Default: the
        observed minimum and maximum.
    chunk_nnz : int, optional
        Target ratings per row block. Default: from the data size and the
        number of threads (see :func:`dmf.data._ratings.default_n_blocks`).

    Returns
    -------
    Ratings

    Raises
    ------
    RatingsError
        Wrong columns or dtypes, empty input, invalid rows or duplicates under
        the ``"raise"`` policies.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> df = pd.DataFrame({"user": ["a", "a", "b"], "item": [10, 20, 10],
    ...                    "rating": [4.0, 3.0, 5.0]})
    >>> r = dmf.from_pandas(df)
    >>> r.n_users, r.n_items, r.nnz, r.global_mean
    (2, 2, 3, 4.0)
    >>> list(r.users)
    ['a', 'b']
    """
    if not isinstance(df, pd.DataFrame):
        raise RatingsError(f"expected a pandas DataFrame, got {type(df).__name__}")
    spec = _Spec(user, item, rating, timestamp, on_invalid, duplicates, rating_scale)
    spec.check_columns(df.columns, df.dtypes, df)
    if len(df) == 0:
        raise RatingsError("no ratings: the DataFrame is empty (0 rows)")
    df = df[spec.columns]
    step = max(1, -(-len(df) // max(1, default_n_blocks(len(df)))))
    parts = [df.iloc[a : a + step] for a in range(0, len(df), step)]
    return _build(parts, spec, chunk_nnz)


def from_dask(
    ddf: Any,
    user: Any = "user",
    item: Any = "item",
    rating: Any = "rating",
    timestamp: Any = None,
    *,
    on_invalid: str = "raise",
    duplicates: str = "raise",
    rating_scale: tuple[float, float] | None = None,
    chunk_nnz: int | None = None,
) -> Ratings:
    """Build :class:`~dmf.Ratings` from a Dask DataFrame, partition by partition.

    The frame is never collected whole: each partition is cleaned, counted and
    cut into row blocks by its own task. Parameters as in :func:`from_pandas`.

    Examples
    --------
    >>> import pandas as pd, dask.dataframe as dd, dmf
    >>> pdf = pd.DataFrame({"u": [1, 2, 2], "i": [1, 1, 2], "r": [1.0, 2.0, 3.0]})
    >>> r = dmf.from_dask(dd.from_pandas(pdf, npartitions=2), user="u", item="i", rating="r")
    >>> r.nnz
    3
    """
    import dask.dataframe as dd

    if not isinstance(ddf, dd.DataFrame):
        raise RatingsError(f"expected a dask DataFrame, got {type(ddf).__name__}")
    spec = _Spec(user, item, rating, timestamp, on_invalid, duplicates, rating_scale)
    spec.check_columns(list(ddf.columns), ddf.dtypes)
    parts = ddf[spec.columns].to_delayed()
    return _build(parts, spec, chunk_nnz)


def _reader_error(path: Any, e: Exception) -> RatingsError:
    return RatingsError(f"could not read {path!r}: {type(e).__name__}: {e}")


def read_csv(
    path: str | os.PathLike[str] | list[str],
    user: Any = "user",
    item: Any = "item",
    rating: Any = "rating",
    timestamp: Any = None,
    *,
    on_invalid: str = "raise",
    duplicates: str = "raise",
    rating_scale: tuple[float, float] | None = None,
    chunk_nnz: int | None = None,
    **read_kwargs: Any,
) -> Ratings:
    """Read ratings from CSV file(s) (local paths, globs or fsspec URLs) with Dask.

    ``read_kwargs`` go to :func:`dask.dataframe.read_csv` (``sep``, ``names``,
    ``header``, ``blocksize``, ...). Other parameters as in :func:`from_pandas`.

    Examples
    --------
    >>> import pandas as pd, dmf, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ratings.csv")
    >>> pd.DataFrame({"userId": [1, 1], "movieId": [5, 6], "rating": [4.5, 3.0]}).to_csv(
    ...     path, index=False)
    >>> dmf.read_csv(path, user="userId", item="movieId", rating="rating").nnz
    2
    """
    import dask.dataframe as dd

    _check_exists(path)
    try:
        ddf = dd.read_csv(path, **read_kwargs)
        columns = list(ddf.columns)
    except (OSError, ValueError, TypeError, pd.errors.ParserError) as e:
        raise _reader_error(path, e) from e
    spec = _Spec(user, item, rating, timestamp, on_invalid, duplicates, rating_scale)
    spec.check_columns(columns, ddf.dtypes)
    try:
        return from_dask(
            ddf,
            user,
            item,
            rating,
            timestamp,
            on_invalid=on_invalid,
            duplicates=duplicates,
            rating_scale=rating_scale,
            chunk_nnz=chunk_nnz,
        )
    except (OSError, pd.errors.ParserError) as e:
        raise _reader_error(path, e) from e


def read_parquet(
    path: str | os.PathLike[str] | list[str],
    user: Any = "user",
    item: Any = "item",
    rating: Any = "rating",
    timestamp: Any = None,
    *,
    on_invalid: str = "raise",
    duplicates: str = "raise",
    rating_scale: tuple[float, float] | None = None,
    chunk_nnz: int | None = None,
    **read_kwargs: Any,
) -> Ratings:
    """Read ratings from a Parquet file or folder (local or fsspec URL) with Dask.

    Only the named columns are read. ``read_kwargs`` go to
    :func:`dask.dataframe.read_parquet`. Other parameters as in :func:`from_pandas`.

    Examples
    --------
    >>> import pandas as pd, dmf, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "r.parquet")
    >>> pd.DataFrame({"u": [1, 2], "i": [5, 5], "r": [4.0, 2.0]}).to_parquet(path)
    >>> dmf.read_parquet(path, user="u", item="i", rating="r").global_mean
    3.0
    """
    import dask.dataframe as dd

    _check_exists(path)
    spec = _Spec(user, item, rating, timestamp, on_invalid, duplicates, rating_scale)
    try:
        ddf = dd.read_parquet(path, **read_kwargs)
        columns = list(ddf.columns)
    except (OSError, ValueError, TypeError) as e:
        raise _reader_error(path, e) from e
    spec.check_columns(columns, ddf.dtypes)
    try:
        return from_dask(
            ddf[spec.columns],
            user,
            item,
            rating,
            timestamp,
            on_invalid=on_invalid,
            duplicates=duplicates,
            rating_scale=rating_scale,
            chunk_nnz=chunk_nnz,
        )
    except OSError as e:
        raise _reader_error(path, e) from e


def _check_exists(path: Any) -> None:
    """A clear error for a missing local file (remote URLs are left to fsspec)."""
    if isinstance(path, (str, os.PathLike)):
        p = os.fspath(path)
        if "://" not in p and not any(ch in p for ch in "*?[") and not os.path.exists(p):
            raise RatingsError(f"no such file or folder: {p!r}")
