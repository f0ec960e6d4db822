"""Cleaning one partition of raw ratings: column checks, invalid values, duplicates.

The policies raise or count, never drop silently; what was done is reported.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dmf._errors import RatingsError, check_choice, first_rows

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


_INT64 = (-(2**63), 2**63 - 1)


def bad_ids(values: Any) -> tuple[np.ndarray, str]:
    """Rows whose id no id map can hold: unhashable (a list, a dict) or an integer beyond int64.

    Returns the mask and what is wrong, for the error message.
    """
    values = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    fine = ("string", "bytes", "floating", "boolean", "datetime", "date", "decimal", "empty")
    if values.dtype != object or pd.api.types.infer_dtype(values, skipna=True) in fine:
        return np.zeros(len(values), dtype=bool), ""  # the common cases, checked in C
    unhashable = np.fromiter(
        (not isinstance(v, Hashable) for v in values), dtype=bool, count=len(values)
    )
    huge = np.fromiter(
        (isinstance(v, int) and not _INT64[0] <= v <= _INT64[1] for v in values),
        dtype=bool,
        count=len(values),
    )
    if unhashable.any():
        return unhashable | huge, "unhashable (a list, dict, set, array) or beyond int64"
    return huge, "an integer beyond the int64 range"


def _clean_part(df: pd.DataFrame, spec: _Spec) -> _Part:
    n = len(df)
    u = df[spec.user]
    i = df[spec.item]
    reasons: list[tuple[np.ndarray, str]] = [
        (u.isna().to_numpy(), "missing user id"),
        (i.isna().to_numpy(), "missing item id"),
    ]
    for col, what in ((u, "user"), (i, "item")):
        mask, why = bad_ids(col.to_numpy())
        reasons.append((mask, f"{what} id is {why}"))
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
