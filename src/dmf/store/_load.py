"""Reading model stores: ``dmf.load``, in memory or with the factors left in the store.

The layout is described in :mod:`dmf.store._persist`. A lazy load opens the
factor matrices as Zarr-backed Dask arrays (chunked along the fit's row
blocks unless ``chunks=`` says otherwise) and reads everything else (ids,
biases, counts, attributes) into memory.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from dmf._errors import ParameterError, StoreError
from dmf.core._lazy import is_lazy, register_store
from dmf.core._protocol import FittedModel, _dmf_version
from dmf.core._registry import kinds, model_class
from dmf.store._location import Location, loads_json, open_group, resolve
from dmf.store._persist import _BASE_VARS, _FACTOR_VARS, FORMAT_VERSION, LAZY_BYTES, _chunk_rows

__all__ = ["load"]


def _open_dataset(
    loc: Location, group: str | None, attrs: dict[str, Any], lazy: bool | None, chunks: Any
) -> xr.Dataset:
    """The stored dataset: everything in memory, or the factors left in the store (lazy)."""
    where = loc.url + (f" (group {group})" if group else "")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = xr.open_zarr(
                loc.store(read_only=True),
                group=group,
                consolidated=False,
                zarr_format=3,
                chunks=None,
            )
            factor_bytes = sum(ds[v].nbytes for v in _FACTOR_VARS if v in ds.variables)
            if lazy is None:
                lazy = factor_bytes > LAZY_BYTES
            if not lazy or not all(v in ds.variables for v in _FACTOR_VARS):
                return ds.load()
            n_blocks = max(1, len(attrs.get("row_edges", [0, 1])) - 1)
            rows = {
                dim: int(chunks) if chunks is not None else _chunk_rows(ds.sizes[dim], n_blocks)
                for dim in ("user", "item")
            }
            root = open_group(loc, mode="r")
            stored = root[group] if group else root
            small = ds.drop_vars(list(_FACTOR_VARS)).load()
            lazy_vars = {}
            for v, dim in zip(_FACTOR_VARS, ("user", "item"), strict=True):
                z = stored[v]
                a = da.from_zarr(z, chunks=(rows[dim], z.shape[1]))
                register_store(a, z)
                lazy_vars[v] = ((dim, "factor"), a)
            return small.assign(lazy_vars)
    except StoreError:
        raise
    except Exception as e:  # zarr/xarray raise many types for broken stores
        raise StoreError(f"{where} cannot be read as a dmf model: {type(e).__name__}: {e}") from e


def _index(values: np.ndarray) -> pd.Index:
    if values.dtype.kind in "iuf":
        index = pd.Index(values)
    else:
        index = pd.Index(np.asarray(values, dtype=object).astype(str).astype(object))
    # pandas builds the hash table lazily and not thread-safely, and a loaded model
    # may answer from several threads at once (a server): build it here, once.
    index.get_indexer(index[:1])
    return index


def _check_attrs(attrs: dict[str, Any], where: str) -> None:
    version = attrs.get("dmf_format")
    if version is None:
        raise StoreError(f"{where} is not a dmf model store (no 'dmf_format' attribute)")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StoreError(
            f"{where} was written in dmf store format {version!r}, newer than this dmf "
            f"({_dmf_version()}) reads (format {FORMAT_VERSION}); upgrade dmf to load it"
        )
    if attrs.get("dmf_complete") is not True:
        raise StoreError(
            f"{where} is incomplete (no completion mark): the save that wrote it was "
            "interrupted; save the model again"
        )


def _read(
    loc: Location,
    group: str | None,
    attrs: dict[str, Any],
    lazy: bool | None = False,
    chunks: Any = None,
) -> FittedModel:
    where = loc.url + (f" (group {group})" if group else "")
    kind = attrs.get("dmf_kind")
    cls = model_class(kind) if isinstance(kind, str) else None
    if cls is None:
        raise StoreError(
            f"{where} holds a model of kind {kind!r}, which this dmf does not know "
            f"(known: {sorted(kinds())})"
        )
    if getattr(cls, "_restore_store", None) is not None:
        lazy = False  # composite models (blends) score through their members: in memory
    ds = _open_dataset(loc, group, attrs, lazy, chunks)
    required = list(getattr(cls, "_store_required", _BASE_VARS))
    if attrs.get("has_factors"):
        required += list(_FACTOR_VARS)
    missing = [v for v in required if v not in ds.variables]
    if missing:
        raise StoreError(f"{where} lacks variable(s) {missing}: the store is damaged")
    for coord in ("user", "item"):
        if coord not in ds.coords:
            raise StoreError(f"{where} lacks the {coord!r} coordinate: the store is damaged")
    try:
        params = loads_json(attrs.get("params"), f"{where}: params")
        train = loads_json(attrs.get("train"), f"{where}: train")
        history = loads_json(attrs.get("history"), f"{where}: history")
        fitted = loads_json(attrs.get("fitted", "{}"), f"{where}: fitted")
        model = cls(**params)
        model.users_ = _index(ds["user"].values)
        model.items_ = _index(ds["item"].values)
        model.user_counts_ = np.asarray(ds["user_counts"].values, dtype=np.int64)
        model.item_counts_ = np.asarray(ds["item_counts"].values, dtype=np.int64)
        model.global_mean_ = float(attrs["global_mean"])
        model.rating_scale_ = tuple(float(v) for v in attrs["rating_scale"])
        model.row_edges_ = np.asarray(attrs["row_edges"], dtype=np.int64)
        train.pop("fingerprint", None)
        model.train_info_ = train
        model.history_ = list(history)
        for name, value in fitted.items():
            setattr(model, name, value)
        if "user_bias" in ds:
            model.user_bias_ = np.asarray(ds["user_bias"].values)
            model.item_bias_ = np.asarray(ds["item_bias"].values)
        if attrs.get("has_factors"):
            for name in _FACTOR_VARS:
                data = ds[name].data
                setattr(model, f"{name}_", data if is_lazy(data) else np.ascontiguousarray(data))
        elif "user_bias" in ds:
            model.user_factors_ = None
            model.item_factors_ = None
    except StoreError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"{where} has malformed attributes: {type(e).__name__}: {e}") from e
    n_u, n_i = len(model.users_), len(model.items_)
    if len(model.user_counts_) != n_u or len(model.item_counts_) != n_i:
        raise StoreError(f"{where}: variable lengths disagree with the id coordinates")
    restore = getattr(model, "_restore_store", None)
    if restore is not None:
        restore(ds, lambda name: _read_child(loc, group, name))
    return model


def _read_child(loc: Location, group: str | None, name: str) -> FittedModel:
    sub = name if group is None else f"{group}/{name}"
    try:
        attrs = dict(open_group(loc, mode="r")[sub].attrs)
    except (KeyError, StoreError) as e:
        raise StoreError(f"{loc.url} lacks the member group {sub!r}: the store is damaged") from e
    if attrs.get("dmf_format") is None:
        raise StoreError(f"{loc.url}: group {sub!r} is not a dmf model")
    attrs["dmf_complete"] = True  # completeness is the root's mark
    _check_attrs(attrs, f"{loc.url} (group {sub})")
    return _read(loc, sub, attrs)


def load(
    path: Any, *, lazy: bool | None = None, chunks: int | None = None, **storage_options: Any
) -> FittedModel:
    """Load a model saved with :meth:`save` (any fsspec URL).

    Returns the same class with the same fitted state, so predictions are
    identical.

    Parameters
    ----------
    path : str or os.PathLike
        Local path or fsspec URL.
    lazy : bool, optional
        Leave the factor matrices in the store: ``user_factors_`` and
        ``item_factors_`` become Zarr-backed Dask arrays, read by the tasks
        that need them (on the workers, with a ``distributed.Client``);
        recommending for a few users reads their rows and, once, the item
        factors. Default: lazy when the two factor matrices exceed 64 MiB,
        in memory otherwise (the fastest single-user answers). Biases, counts
        and ids are always read into memory.
    chunks : int, optional
        Rows per Dask chunk of lazy factors. Default: the fit's row blocks.
    **storage_options
        Passed to fsspec.

    Returns
    -------
    FittedModel

    Raises
    ------
    dmf.StoreError
        Nothing at ``path``; not a dmf store; a store whose save was
        interrupted (no completion mark); a newer store format; missing
        variables or malformed attributes.

    Examples
    --------
    >>> import pandas as pd, dmf
    >>> df = pd.DataFrame({"user": ["a", "b"], "item": [1, 1], "rating": [3.0, 5.0]})
    >>> url = dmf.Baseline().fit(dmf.from_pandas(df)).save("memory://doc/b2.zarr", overwrite=True)
    >>> type(dmf.load(url)).__name__
    'Baseline'
    """
    loc = resolve(path, storage_options)
    if not loc.exists():
        raise StoreError(f"no model store at {loc.url}")
    if lazy is not None and not isinstance(lazy, bool):
        raise ParameterError(f"lazy={lazy!r} is not allowed: lazy must be None, True or False")
    if chunks is not None and (
        isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1
    ):
        raise ParameterError(f"chunks={chunks!r} is not allowed: chunks must be a positive int")
    attrs = dict(open_group(loc, mode="r").attrs)
    _check_attrs(attrs, loc.url)
    return _read(loc, None, attrs, lazy, chunks)
