"""The :class:`Ratings` container: id maps plus a row-blocked sparse matrix on Dask."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import sparse
from dask.delayed import Delayed

from dmf._errors import RatingsError
from dmf.data._blocks import RowBlock, balanced_edges, col_pieces, merge_col_pieces
from dmf.engine._compute import key, n_threads, persist

__all__ = ["Ratings", "default_n_blocks"]

#: Blocks smaller than this are not worth a task of their own.
_MIN_CHUNK_NNZ = 10_000
#: Blocks larger than this make tasks long and memory lumpy.
_MAX_CHUNK_NNZ = 2_000_000


def default_n_blocks(nnz: int, chunk_nnz: int | None = None, max_row_nnz: int = 0) -> int:
    """How many row blocks a matrix of ``nnz`` ratings gets.

    With ``chunk_nnz`` given, ``ceil(nnz / chunk_nnz)``. Otherwise two blocks per
    available thread (so work balances while a block waits), fewer when blocks
    would hold under 10 000 ratings, more when they would hold over 2 000 000;
    and, given the heaviest row's count ``max_row_nnz``, few enough that a block's
    mean is at least twice that row, so nnz-balanced edges keep every block
    within 1.5x the mean (a block exceeds the mean by at most one row).
    """
    if chunk_nnz is not None:
        return max(1, -(-int(nnz) // int(chunk_nnz)))
    n = 2 * n_threads()
    n = min(n, max(1, nnz // _MIN_CHUNK_NNZ))
    n = max(n, -(-int(nnz) // _MAX_CHUNK_NNZ))
    if max_row_nnz > 0:
        n = min(n, max(1, int(nnz) // (2 * int(max_row_nnz))))
    return max(1, n)


def _block_stats(block: RowBlock) -> dict[str, Any]:
    data = block.data
    return {
        "nnz": block.nnz,
        "sum": float(data.sum(dtype=np.float64)),
        "min": float(data.min()) if block.nnz else np.inf,
        "max": float(data.max()) if block.nnz else -np.inf,
        "user_counts": np.bincount(block.rows, minlength=block.n_rows).astype(np.int64),
        "item_counts": np.bincount(block.cols, minlength=block.n_items).astype(np.int64),
    }


def _to_coo(block: RowBlock) -> sparse.COO:
    return block.to_coo()


def _ts_coo(block: RowBlock) -> sparse.COO:
    coords = np.stack([block.rows.astype(np.int64), block.cols.astype(np.int64)])
    return sparse.COO(coords, block.ts, shape=(block.n_rows, block.n_items), prune=False)


def _to_frame(block: RowBlock) -> pd.DataFrame:
    out = {"user": block.user_codes(), "item": block.cols.astype(np.int64), "rating": block.data}
    if block.ts is not None:
        out["timestamp"] = block.ts
    return pd.DataFrame(out)


class Ratings:
    """Who rated what, how much: id maps plus a row-blocked sparse matrix on Dask.

    Build one with :func:`dmf.from_pandas`, :func:`dmf.from_dask`,
    :func:`dmf.read_csv`, :func:`dmf.read_parquet`, :func:`dmf.datasets.movielens`
    or :func:`dmf.datasets.synthetic`; splits (:mod:`dmf.split`) derive new ones
    that share the same id maps.

    Attributes
    ----------
    users, items : pandas.Index
        Original ids in code order: user code ``c`` is ``users[c]``. Codes are
        contiguous int32, assigned in sorted id order.
    matrix : dask.array.Array
        ``(n_users, n_items)`` float32, chunked by row blocks whose nnz are
        balanced; each chunk is a ``sparse.COO`` array (never dense).
    timestamps : dask.array.Array or None
        The same layout holding int64 timestamps (seconds), when the input had them.
    n_users, n_items, nnz : int
    global_mean : float
        Mean rating (float64).
    user_counts, item_counts : numpy.ndarray
        Ratings per user and per item (int64).
    rating_scale : tuple of float
        ``(low, high)``: as given when building, else the observed min and max.
        Predictions are clipped to it.
    implicit : bool
        True when built without a rating column (each interaction worth 1).
    report : dict
        What cleaning did: rows read, rows dropped as invalid, duplicates merged,
        and for splits how many test ratings belong to users or items unseen in train.
    row_edges : numpy.ndarray
        User-code boundaries of the row blocks (``n_blocks + 1`` values).

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> r = dmf.from_pandas(pd.DataFrame(
    ...     {"user": ["a", "a", "b"], "item": [10, 20, 10], "rating": [4.0, 3.0, 5.0]}))
    >>> r.n_users, r.n_items, r.nnz, r.global_mean
    (2, 2, 3, 4.0)
    >>> list(r.users), list(r.items)
    (['a', 'b'], [10, 20])
    >>> r.matrix
    dask.array<..., shape=(2, 2), dtype=float32, chunksize=(...), chunktype=sparse.COO>
    """

    def __init__(
        self,
        blocks: Sequence[Delayed],
        row_edges: np.ndarray,
        users: pd.Index,
        items: pd.Index,
        *,
        has_timestamps: bool = False,
        rating_scale: tuple[float, float] | None = None,
        implicit: bool = False,
        report: dict[str, Any] | None = None,
    ) -> None:
        self.blocks = list(blocks)
        self.row_edges = np.asarray(row_edges, dtype=np.int64)
        self.users = users
        self.items = items
        self.has_timestamps = bool(has_timestamps)
        self.implicit = bool(implicit)
        self.report = dict(report or {})
        stats = dask.compute([dask.delayed(_block_stats)(b) for b in self.blocks])[0]
        self.nnz = int(sum(s["nnz"] for s in stats))
        total = sum(s["sum"] for s in stats)
        self.global_mean = float(total / self.nnz) if self.nnz else float("nan")
        self.user_counts = (
            np.concatenate([s["user_counts"] for s in stats])
            if stats
            else np.zeros(0, dtype=np.int64)
        )
        self.item_counts = (
            np.sum([s["item_counts"] for s in stats], axis=0).astype(np.int64)
            if stats
            else np.zeros(len(items), dtype=np.int64)
        )
        observed = (
            (min(s["min"] for s in stats), max(s["max"] for s in stats))
            if self.nnz
            else (float("nan"), float("nan"))
        )
        #: The smallest and largest value in the data (the scale may be wider).
        self.observed_range = observed
        self.rating_scale = tuple(rating_scale) if rating_scale is not None else observed

    # ------------------------------------------------------------------ basics
    @property
    def source(self) -> str | None:
        """Where the data came from (a file, a DataFrame, a MovieLens release), if known."""
        return self.report.get("source")

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    def __repr__(self) -> str:
        kind = "implicit interactions" if self.implicit else "ratings"
        return (
            f"<dmf.Ratings: {self.nnz:,} {kind}, {self.n_users:,} users x "
            f"{self.n_items:,} items, {self.n_blocks} blocks, mean {self.global_mean:.4g}>"
        )

    def __len__(self) -> int:
        return self.nnz

    # ------------------------------------------------------------- dask views
    @functools.cached_property
    def matrix(self) -> da.Array:
        meta = sparse.COO.from_numpy(np.zeros((0, 0), dtype=np.float32))
        chunks = [
            da.from_delayed(
                dask.delayed(_to_coo)(b, dask_key_name=key("ratings-coo", b.key)),
                shape=(int(e1 - e0), self.n_items),
                dtype=np.float32,
                meta=meta,
            )
            for b, e0, e1 in zip(self.blocks, self.row_edges[:-1], self.row_edges[1:], strict=True)
        ]
        if not chunks:
            return da.zeros((0, self.n_items), dtype=np.float32)
        return da.concatenate(chunks, axis=0)

    @functools.cached_property
    def timestamps(self) -> da.Array | None:
        if not self.has_timestamps:
            return None
        meta = sparse.COO.from_numpy(np.zeros((0, 0), dtype=np.int64))
        chunks = [
            da.from_delayed(
                dask.delayed(_ts_coo)(b, dask_key_name=key("ratings-ts", b.key)),
                shape=(int(e1 - e0), self.n_items),
                dtype=np.int64,
                meta=meta,
            )
            for b, e0, e1 in zip(self.blocks, self.row_edges[:-1], self.row_edges[1:], strict=True)
        ]
        return da.concatenate(chunks, axis=0)

    def row_csr(self) -> list[Delayed]:
        """One lazy :class:`~dmf.data._blocks.CSR` per row block (users as rows).

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> r = dmf.from_pandas(pd.DataFrame(
        ...     {"user": ["a", "a", "b"], "item": [10, 20, 10], "rating": [4.0, 3.0, 5.0]}))
        >>> csr = r.row_csr()[0].compute()
        >>> csr.indptr.tolist(), csr.indices.tolist()
        ([0, 2, 3], [0, 1, 0])
        """
        return [
            dask.delayed(RowBlock.csr)(b, dask_key_name=key("csr-users", b.key))
            for b in self.blocks
        ]

    def col_edges(self, n_blocks: int | None = None) -> np.ndarray:
        """Item-code boundaries that balance nnz over ``n_blocks`` item blocks.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> r = dmf.from_pandas(pd.DataFrame(
        ...     {"user": ["a", "a", "b"], "item": [10, 20, 10], "rating": [4.0, 3.0, 5.0]}))
        >>> r.col_edges(1).tolist()
        [0, 2]
        """
        n = self.n_blocks if n_blocks is None else int(n_blocks)
        return balanced_edges(self.item_counts, n)

    def col_csr(self, col_edges: np.ndarray | None = None) -> list[Delayed]:
        """One lazy item-major :class:`~dmf.data._blocks.CSR` per item block.

        Built by an all-to-all over the row blocks: each row block is cut by item
        range, each item block merges its pieces. Persist the result once per fit.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> r = dmf.from_pandas(pd.DataFrame(
        ...     {"user": ["a", "a", "b"], "item": [10, 20, 10], "rating": [4.0, 3.0, 5.0]}))
        >>> csc = r.col_csr()[0].compute()  # rows are items, indices user codes
        >>> csc.indptr.tolist(), csc.indices.tolist()
        ([0, 2, 3], [0, 1, 0])
        """
        edges = self.col_edges() if col_edges is None else np.asarray(col_edges, np.int64)
        n_cols = len(edges) - 1
        token = key("", [b.key for b in self.blocks], edges)
        pieces = [
            dask.delayed(col_pieces, nout=n_cols)(
                b, edges, dask_key_name=f"csr-split-items{token}-{i}"
            )
            for i, b in enumerate(self.blocks)
        ]
        return [
            dask.delayed(merge_col_pieces)(
                int(edges[j]),
                int(edges[j + 1]),
                self.n_users,
                *[p[j] for p in pieces],
                dask_key_name=f"csr-items{token}-{j}",
            )
            for j in range(n_cols)
        ]

    def to_pandas(self, codes: bool = False) -> pd.DataFrame:
        """All ratings as a DataFrame (``user, item, rating[, timestamp]``), sorted by user, item.

        Original ids by default; ``codes=True`` gives int32 codes instead. This
        collects everything in memory: meant for small data and inspection.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> r = dmf.from_pandas(pd.DataFrame(
        ...     {"user": ["a", "a", "b"], "item": [10, 20, 10], "rating": [4.0, 3.0, 5.0]}))
        >>> r.to_pandas()
          user  item  rating
        0    a    10     4.0
        1    a    20     3.0
        2    b    10     5.0
        """
        parts = dask.compute([dask.delayed(_to_frame)(b) for b in self.blocks])[0]
        cols = ["user", "item", "rating"] + (["timestamp"] if self.has_timestamps else [])
        df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
        if not codes:
            df["user"] = self.users.take(df["user"].to_numpy(dtype=np.int64))
            df["item"] = self.items.take(df["item"].to_numpy(dtype=np.int64))
        else:
            df["user"] = df["user"].astype(np.int32)
            df["item"] = df["item"].astype(np.int32)
        return df

    def to_scipy(self):
        """The matrix as a ``scipy.sparse.csr_array`` (collects it; for small data).

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> r = dmf.from_pandas(pd.DataFrame(
        ...     {"user": ["a", "a", "b"], "item": [10, 20, 10], "rating": [4.0, 3.0, 5.0]}))
        >>> r.to_scipy().toarray()
        array([[4., 3.],
               [5., 0.]], dtype=float32)
        """
        import scipy.sparse as sp

        df = self.to_pandas(codes=True)
        return sp.csr_array(
            (df["rating"].to_numpy(), (df["user"].to_numpy(), df["item"].to_numpy())),
            shape=self.shape,
        )

    # ---------------------------------------------------------- derivations
    def derive(
        self,
        blocks: Sequence[Delayed],
        *,
        report: dict[str, Any] | None = None,
    ) -> Ratings:
        """A Ratings over new row blocks with the same edges and the same id maps.

        ``blocks`` must cover the same user ranges as ``self.blocks`` (splits and
        filters keep the blocking). The blocks are persisted here.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> r = dmf.from_pandas(pd.DataFrame(
        ...     {"user": ["a", "a", "b"], "item": [10, 20, 10], "rating": [4.0, 3.0, 5.0]}))
        >>> same = r.derive(r.blocks)
        >>> same.nnz, list(same.users) == list(r.users)
        (3, True)
        """
        (blocks,) = persist(list(blocks))
        out = Ratings(
            blocks,
            self.row_edges,
            self.users,
            self.items,
            has_timestamps=self.has_timestamps,
            rating_scale=self.rating_scale,
            implicit=self.implicit,
            report=report,
        )
        if self.source is not None:
            out.report.setdefault("source", self.source)
        return out

    def user_codes(self, users: Any) -> np.ndarray:
        """Codes of original user ids, ``-1`` where an id is unknown.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> r = dmf.from_pandas(pd.DataFrame(
        ...     {"user": ["a", "a", "b"], "item": [10, 20, 10], "rating": [4.0, 3.0, 5.0]}))
        >>> r.user_codes(["b", "zz"]).tolist()
        [1, -1]
        """
        return _codes(self.users, users)

    def item_codes(self, items: Any) -> np.ndarray:
        """Codes of original item ids, ``-1`` where an id is unknown.

        Examples
        --------
        >>> import pandas as pd, dmf
        >>> r = dmf.from_pandas(pd.DataFrame(
        ...     {"user": ["a", "a", "b"], "item": [10, 20, 10], "rating": [4.0, 3.0, 5.0]}))
        >>> r.item_codes([20]).tolist()
        [1]
        """
        return _codes(self.items, items)


def _codes(index: pd.Index, ids: Any) -> np.ndarray:
    if isinstance(ids, (str, bytes)) or np.isscalar(ids):
        ids = [ids]
    try:
        return index.get_indexer(pd.Index(ids)).astype(np.int64)
    except TypeError as e:  # pragma: no cover - e.g. unhashable ids
        raise RatingsError(f"ids cannot be looked up: {e}") from e


def empty_error(what: str = "ratings") -> RatingsError:
    return RatingsError(f"no {what}: the input has 0 valid rows")


def check_ratings(obj: Any, name: str = "ratings") -> Ratings:
    """Raise a :class:`RatingsError` unless ``obj`` is a non-empty :class:`Ratings`."""
    if not isinstance(obj, Ratings):
        raise RatingsError(
            f"{name} must be a dmf.Ratings (build one with dmf.from_pandas, dmf.read_csv, ...), "
            f"got {type(obj).__name__}"
        )
    if obj.nnz == 0:
        raise RatingsError(f"{name} is empty: 0 ratings")
    return obj
