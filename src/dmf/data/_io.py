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

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd

from dmf._errors import RatingsError
from dmf.data._build import _build
from dmf.data._clean import _Spec
from dmf.data._ratings import Ratings, default_n_blocks

__all__ = [
    "from_dask",
    "from_pandas",
    "read_csv",
    "read_parquet",
    "to_ratings",
]

_F = TypeVar("_F", bound=Callable[..., Ratings])


def _options(
    user: Any = "user",
    item: Any = "item",
    rating: Any = "rating",
    timestamp: Any = None,
    *,
    on_invalid: str = "raise",
    duplicates: str = "raise",
    rating_scale: tuple[float, float] | None = None,
    chunk_nnz: int | None = None,
) -> tuple[_Spec, int | None]:
    """The columns and policies every builder takes (documented in :func:`from_pandas`)."""
    return _Spec(user, item, rating, timestamp, on_invalid, duplicates, rating_scale), chunk_nnz


_OPTIONS = inspect.signature(_options).parameters


def _takes_options(build: _F) -> _F:
    """Give ``build(source, spec, chunk_nnz, /[, **kwargs])`` the public signature of a builder.

    The column and policy parameters are declared once, in :func:`_options`: the
    public function takes the source, then those, then ``build``'s ``**kwargs``
    if it has them (a reader's options, passed through).
    """
    first, _, _, *extra = inspect.signature(build).parameters.values()
    source = first.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
    signature = inspect.signature(build).replace(parameters=[source, *_OPTIONS.values(), *extra])

    @functools.wraps(build)
    def builder(*args: Any, **kwargs: Any) -> Ratings:
        given = signature.bind(*args, **kwargs).arguments
        spec, chunk_nnz = _options(**{name: given[name] for name in _OPTIONS if name in given})
        passed = given.get(extra[0].name, {}) if extra else {}
        return build(given[source.name], spec, chunk_nnz, **passed)

    builder.__signature__ = signature  # type: ignore[attr-defined]
    return builder  # type: ignore[return-value]


@_takes_options
def from_pandas(df: pd.DataFrame, spec: _Spec, chunk_nnz: int | None, /) -> Ratings:
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
    spec.check_columns(df.columns, df.dtypes, df)
    if len(df) == 0:
        raise RatingsError("no ratings: the DataFrame is empty (0 rows)")
    df = df[spec.columns]
    step = max(1, -(-len(df) // max(1, default_n_blocks(len(df)))))
    parts = [df.iloc[a : a + step] for a in range(0, len(df), step)]
    out = _build(parts, spec, chunk_nnz)
    out.report["source"] = "pandas DataFrame"
    return out


@_takes_options
def from_dask(ddf: Any, spec: _Spec, chunk_nnz: int | None, /) -> Ratings:
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
    return _from_frame(ddf, spec, chunk_nnz, "dask DataFrame")


def _from_frame(ddf: Any, spec: _Spec, chunk_nnz: int | None, source: str) -> Ratings:
    """Build from a Dask DataFrame's partitions, one task each."""
    spec.check_columns(list(ddf.columns), ddf.dtypes)
    out = _build(ddf[spec.columns].to_delayed(), spec, chunk_nnz)
    out.report["source"] = source
    return out


def to_ratings(
    data: Any, user: Any = "user", item: Any = "item", rating: Any = "rating", name: str = "test"
) -> Ratings:
    """A :class:`Ratings` as is, or one built from a pandas DataFrame (default policies).

    Examples
    --------
    >>> import pandas as pd
    >>> from dmf.data._io import to_ratings
    >>> to_ratings(pd.DataFrame({"user": [1], "item": [2], "rating": [4.0]})).nnz
    1
    """
    if isinstance(data, Ratings):
        return data
    if isinstance(data, pd.DataFrame):
        return from_pandas(data, user=user, item=item, rating=rating)
    raise RatingsError(
        f"{name} must be a dmf.Ratings or a pandas DataFrame, got {type(data).__name__}"
    )


@_takes_options
def read_csv(
    path: str | os.PathLike[str] | list[str],
    spec: _Spec,
    chunk_nnz: int | None,
    /,
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

    return _read("CSV", dd.read_csv, path, spec, chunk_nnz, read_kwargs)


@_takes_options
def read_parquet(
    path: str | os.PathLike[str] | list[str],
    spec: _Spec,
    chunk_nnz: int | None,
    /,
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

    return _read("Parquet", dd.read_parquet, path, spec, chunk_nnz, read_kwargs)


def _read(
    kind: str,
    reader: Callable[..., Any],
    path: Any,
    spec: _Spec,
    chunk_nnz: int | None,
    read_kwargs: dict[str, Any],
) -> Ratings:
    """Open ``path`` with a Dask reader and build from its frame, naming the file on failure."""
    _check_exists(path)
    try:
        ddf = reader(path, **read_kwargs)
        columns = list(ddf.columns)
    except (OSError, ValueError, TypeError) as e:
        raise _reader_error(path, e) from e
    spec.check_columns(columns, ddf.dtypes)
    source = f"{kind} {os.fspath(path) if not isinstance(path, list) else path}"
    try:
        return _from_frame(ddf, spec, chunk_nnz, source)
    except (OSError, pd.errors.ParserError) as e:
        raise _reader_error(path, e) from e


def _reader_error(path: Any, e: Exception) -> RatingsError:
    return RatingsError(f"could not read {path!r}: {type(e).__name__}: {e}")


def _check_exists(path: Any) -> None:
    """A clear error for a missing local file (remote URLs are left to fsspec)."""
    if isinstance(path, (str, os.PathLike)):
        p = os.fspath(path)
        if "://" not in p and not any(ch in p for ch in "*?[") and not os.path.exists(p):
            raise RatingsError(f"no such file or folder: {p!r}")
