"""Models as xarray Datasets in Zarr: ``model.save``, ``dmf.load``, ``model.to_xarray``.

A model store is an xarray Dataset written with ``to_zarr`` (Zarr format 3)::

    user_factors (user, factor)  float32/64   absent for bias-only models
    item_factors (item, factor)
    user_bias    (user)
    item_bias    (item)
    user_counts  (user)          int64        training ratings per user (0: cold)
    item_counts  (item)          int64
    coords user, item            the original ids (int64 or str)

with attributes ``dmf_format`` (layout version), ``dmf_kind``, ``dmf_version``,
``params`` (JSON), ``global_mean``, ``rating_scale``, ``train`` (JSON: shape,
nnz, fingerprint), ``row_edges`` (the fit's user blocks), ``history`` (JSON)
and ``dmf_complete``, set last. Factor arrays are Dask-backed with one chunk
per fit block (Zarr needs a regular grid: ``ceil(n / n_blocks)`` rows each), so
``to_zarr`` writes the chunks in parallel from the Dask graph.

Crash safety: on a local filesystem the store is written to a temporary
sibling directory and renamed into place; on every filesystem the
``dmf_complete`` attribute is the last write and :func:`load` refuses a store
without it.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from dmf._errors import NotFittedError, ParameterError, StoreError
from dmf.core._lazy import is_lazy
from dmf.core._protocol import FittedModel, _dmf_version
from dmf.data._ratings import check_ratings
from dmf.store._location import Location, dumps_json, open_group, resolve
from dmf.store._serving import interactions_of, titles_of, write_extras

__all__ = ["FORMAT_VERSION", "LAZY_BYTES", "save", "to_xarray"]

#: Version of the store layout written by this dmf; newer ones are refused on load.
FORMAT_VERSION = 1

#: Rows per Zarr chunk (at most): a lazily loaded model reads a user's row from one.
_ZARR_ROWS = 8192
#: ``dmf.load`` keeps factor arrays larger than this in the store (lazy) by default.
LAZY_BYTES = 64 * 2**20

_BASE_VARS = ("user_bias", "item_bias", "user_counts", "item_counts")
_FACTOR_VARS = ("user_factors", "item_factors")
#: Fitted attributes every model has; anything else ending in ``_`` that is a
#: JSON-able scalar is kept under the ``fitted`` attribute.
_KNOWN_FITTED = {
    "users_",
    "items_",
    "user_counts_",
    "item_counts_",
    "global_mean_",
    "rating_scale_",
    "row_edges_",
    "train_info_",
    "history_",
    "user_bias_",
    "item_bias_",
    "user_factors_",
    "item_factors_",
}


def _ids_coord(index: pd.Index, what: str) -> np.ndarray:
    values = index.to_numpy()
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        return values.astype(np.float64)
    values = np.asarray(values, dtype=object)
    if all(isinstance(v, str) for v in values):
        return values
    bad = [type(v).__name__ for v in values if not isinstance(v, str)][:3]
    raise ParameterError(
        f"{what} ids of type {sorted(set(bad))} cannot be saved: dmf stores int, float or str ids"
    )


def _chunk_rows(n: int, n_blocks: int) -> int:
    """Rows per Dask chunk: one fit block, rounded up to whole Zarr chunks."""
    rows = max(1, -(-n // max(1, n_blocks)))
    z = _zarr_rows(rows)
    return -(-rows // z) * z


def _zarr_rows(rows: int) -> int:
    """Rows per Zarr chunk: small enough that reading one user's row stays cheap."""
    return max(1, min(rows, _ZARR_ROWS))


def fingerprint(model: FittedModel) -> str:
    """SHA-256 of the training data's summary: ids, per-id counts and global mean."""
    h = hashlib.sha256()
    for index in (model.users_, model.items_):
        h.update(pd.util.hash_pandas_object(pd.Index(index), index=False).to_numpy().tobytes())
    h.update(np.asarray(model.user_counts_, dtype=np.int64).tobytes())
    h.update(np.asarray(model.item_counts_, dtype=np.int64).tobytes())
    h.update(repr(float(model.global_mean_)).encode())
    return h.hexdigest()


def _extra_fitted(model: FittedModel) -> dict[str, Any]:
    out = {}
    for name, value in vars(model).items():
        if not name.endswith("_") or name.startswith("_") or name in _KNOWN_FITTED:
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif isinstance(value, dict) and all(
            isinstance(v, (bool, int, float, str)) or v is None for v in value.values()
        ):
            out[name] = dict(value)  # e.g. the test metrics recorded at fit time
    return out


def to_xarray(model: FittedModel, chunked: bool = False) -> xr.Dataset:
    """The fitted model as an :class:`xarray.Dataset` (the layout :func:`save` writes).

    Parameters
    ----------
    model : fitted dmf model
    chunked : bool
        Back the factor and bias arrays with Dask arrays chunked along the
        fit's row blocks (what :func:`save` writes in parallel). Default:
        plain NumPy arrays.

    Returns
    -------
    xarray.Dataset
        ``user_factors(user, factor)``, ``item_factors(item, factor)``,
        ``user_bias(user)``, ``item_bias(item)``, ``user_counts(user)``,
        ``item_counts(item)``; coordinates ``user`` and ``item`` hold the
        original ids; attributes hold the kind, parameters, global mean,
        rating scale, training summary and history.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> df = pd.DataFrame({"user": ["a", "b"], "item": [1, 2], "rating": [4.0, 2.0]})
    >>> ds = dmf.Baseline().fit(dmf.from_pandas(df)).to_xarray()
    >>> sorted(ds.data_vars)
    ['item_bias', 'item_counts', 'user_bias', 'user_counts']
    >>> ds.attrs["dmf_kind"], list(ds["user"].values)
    ('baseline', ['a', 'b'])
    """
    if not isinstance(model, FittedModel):
        raise ParameterError(f"model must be a fitted dmf model, got {type(model).__name__}")
    model._check_fitted()
    users = _ids_coord(model.users_, "user")
    items = _ids_coord(model.items_, "item")
    edges = np.asarray(getattr(model, "row_edges_", [0, len(users)]), dtype=np.int64)
    n_blocks = max(1, len(edges) - 1)
    cu, ci = _chunk_rows(len(users), n_blocks), _chunk_rows(len(items), n_blocks)

    def wrap(a: Any, rows: int) -> Any:
        if is_lazy(a):  # blocks on the workers or in a store: never gathered here
            return a.rechunk((rows, *a.shape[1:])) if chunked else a
        a = np.asarray(a)
        if not chunked:
            return a
        return da.from_array(a, chunks=(rows, *a.shape[1:]), name=False)

    data: dict[str, Any] = {}
    extra = getattr(model, "_store_variables", None)
    if extra is None:
        data["user_bias"] = (("user",), wrap(model.user_bias_, cu))
        data["item_bias"] = (("item",), wrap(model.item_bias_, ci))
    data["user_counts"] = (("user",), wrap(np.asarray(model.user_counts_, np.int64), cu))
    data["item_counts"] = (("item",), wrap(np.asarray(model.item_counts_, np.int64), ci))
    uf, vf = getattr(model, "user_factors_", None), getattr(model, "item_factors_", None)
    has_factors = uf is not None and vf is not None
    if has_factors:
        data["user_factors"] = (("user", "factor"), wrap(uf, cu))
        data["item_factors"] = (("item", "factor"), wrap(vf, ci))
    if extra is not None:
        data.update(extra())
    train = dict(getattr(model, "train_info_", {}))
    train["fingerprint"] = fingerprint(model)
    attrs = {
        "dmf_format": FORMAT_VERSION,
        "dmf_kind": model.kind,
        "dmf_version": _dmf_version(),
        "params": dumps_json(model.get_params(), "model parameters"),
        "global_mean": float(model.global_mean_),
        "rating_scale": [float(v) for v in model.rating_scale_],
        "has_factors": bool(has_factors),
        "train": dumps_json(train, "training summary"),
        "row_edges": [int(e) for e in edges],
        "history": dumps_json(list(getattr(model, "history_", [])), "fit history"),
        "fitted": dumps_json(_extra_fitted(model), "fitted attributes"),
    }
    coords = {"user": users, "item": items}
    if has_factors:
        coords["factor"] = np.arange(uf.shape[1], dtype=np.int64)
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _write(model: FittedModel, loc: Location, group: str | None = None) -> None:
    """Write the model's dataset (and children) to ``loc``; the completion mark is not set."""
    ds = to_xarray(model, chunked=True)
    encoding = {
        name: {"chunks": (_zarr_rows(v.data.chunksize[0]), *v.shape[1:])}
        for name, v in ds.data_vars.items()
        if v.ndim and v.dims[0] in ("user", "item") and is_lazy(v.data)
    }
    # Arrays in this process (ids, counts, in-memory factors) are written by its
    # threads: sent to the workers they would only travel to be written. Arrays on
    # the workers (or in another store) are written there, after the rest, unless
    # the store is memory://, which lives in this process only.
    remote = [
        name
        for name, attr in (("user_factors", "user_factors_"), ("item_factors", "item_factors_"),
                           ("user_bias", "user_bias_"), ("item_bias", "item_bias_"))
        if name in ds.data_vars and is_lazy(getattr(model, attr, None))
    ]  # fmt: skip
    if "memory" in _protocols(loc):
        remote = []
    parts = [(ds.drop_vars(remote), "w", "threads")]
    if remote:
        lazy = ds[remote]
        parts.append((lazy.drop_vars(list(lazy.coords)), "a", None))
    store = loc.store(read_only=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        for part, mode, scheduler in parts:
            with dask.config.set(scheduler=scheduler) if scheduler else _nullcontext():
                part.to_zarr(
                    store,
                    group=group,
                    mode=mode,
                    zarr_format=3,
                    consolidated=False,
                    compute=True,
                    encoding={n: e for n, e in encoding.items() if n in part.data_vars},
                )
    for name, child in getattr(model, "_store_children", lambda: {})().items():
        sub = name if group is None else f"{group}/{name}"
        _write(child, loc, group=sub)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _protocols(loc: Location) -> tuple[str, ...]:
    p = loc.fs.protocol
    return tuple(p) if isinstance(p, (tuple, list)) else (p,)


def _mark_complete(loc: Location) -> None:
    group = open_group(loc, mode="r+")
    group.attrs.update({"dmf_complete": True})  # the last write of a save


def _is_dmf_store(loc: Location) -> bool:
    try:
        group = open_group(loc, mode="r")
    except StoreError:
        return False
    return "dmf_format" in group.attrs


def save(
    model: FittedModel,
    path: Any,
    overwrite: bool = False,
    *,
    interactions: Any = None,
    titles: Any = None,
    **storage_options: Any,
) -> str:
    """Save a fitted model to a Zarr store at a local path or any fsspec URL.

    Parameters
    ----------
    model : fitted dmf model
    path : str or os.PathLike
        ``"model.zarr"``, ``"memory://m.zarr"``, ``"s3://bucket/m.zarr"``, ...
    overwrite : bool
        Replace an existing dmf model store at ``path``. Without it an
        existing path is a :class:`dmf.StoreError`; a path holding something
        that is not a dmf store is never deleted.
    interactions : Ratings or False, optional
        Training interactions to keep in the store (what ``dmf serve`` leaves
        out of recommendations and folds new events in with). By default the
        ratings the model was fitted on; ``False`` keeps none.
    titles : pandas.Series or dict, optional
        Item id -> title, shown by ``dmf recommend``, ``dmf similar`` and ``dmf serve``.
    **storage_options
        Passed to fsspec (credentials, endpoint, ...).

    Returns
    -------
    str
        The store's URL.

    Raises
    ------
    dmf.StoreError
        ``path`` exists and ``overwrite`` is false, or holds something else.
    dmf.NotFittedError
        The model is not fitted.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> df = pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [3.0, 5.0]})
    >>> model = dmf.Baseline().fit(dmf.from_pandas(df))
    >>> url = model.save("memory://doc/baseline.zarr", overwrite=True)
    >>> dmf.load(url).predict([1, 2], [1, 1]).tolist() == model.predict([1, 2], [1, 1]).tolist()
    True
    """
    if not isinstance(model, FittedModel):
        raise ParameterError(f"model must be a fitted dmf model, got {type(model).__name__}")
    if not model.is_fitted:
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet: nothing to save")
    if not isinstance(overwrite, bool):
        raise ParameterError(f"overwrite={overwrite!r} is not allowed: overwrite must be a bool")
    extras = _serving_extras(model, interactions, titles)
    loc = resolve(path, storage_options)
    exists = loc.exists() and not loc.is_empty_dir()
    if exists:
        if not overwrite:
            raise StoreError(f"{loc.url} already exists: pass overwrite=True to replace it")
        if loc.fs.isfile(loc.root) or not _is_dmf_store(loc):
            raise StoreError(
                f"{loc.url} exists and is not a dmf model store: refusing to overwrite it"
            )
    if loc.is_local:
        tmp = loc.temp_sibling("saving")
        try:
            _write(model, tmp)
            write_extras(tmp, *extras)
            _mark_complete(tmp)
            if exists:
                old = loc.temp_sibling("replaced")
                os.rename(loc.root, old.root)
                os.rename(tmp.root, loc.root)
                old.rm()
            else:
                if os.path.isdir(loc.root):  # an empty directory
                    os.rmdir(loc.root)
                os.rename(tmp.root, loc.root)
        finally:
            tmp.rm()
    else:
        if exists:
            loc.rm()
        _write(model, loc)
        write_extras(loc, *extras)
        _mark_complete(loc)
    return loc.url


def _serving_extras(model: FittedModel, interactions: Any, titles: Any) -> tuple[Any, Any]:
    """``(interactions CSR or None, titles by item code or None)`` to write (see ._serving)."""
    if interactions is None:
        interactions = getattr(model, "_train_ratings", None)
    if interactions is False or interactions is None:
        inter = None
    elif isinstance(interactions, tuple):  # already a CSR by the model's codes
        inter = interactions
    else:
        inter = interactions_of(model, check_ratings(interactions, "interactions"))
    return inter, None if titles is None else titles_of(model, titles)
