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
from dmf.core._protocol import FittedModel, _dmf_version
from dmf.core._registry import kinds, model_class
from dmf.data._ratings import check_ratings
from dmf.store._location import Location, dumps_json, loads_json, open_group, resolve
from dmf.store._serving import interactions_of, titles_of, write_extras

__all__ = ["FORMAT_VERSION", "load", "save", "to_xarray"]

#: Version of the store layout written by this dmf; newer ones are refused on load.
FORMAT_VERSION = 1

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
    return max(1, -(-n // max(1, n_blocks)))


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

    def wrap(a: np.ndarray, rows: int) -> Any:
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
    # memory:// lives in this process only: keep the parallel write in-process.
    scheduler = "threads" if "memory" in _protocols(loc) else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        with dask.config.set(scheduler=scheduler) if scheduler else _nullcontext():
            ds.to_zarr(
                loc.store(read_only=False),
                group=group,
                mode="w",
                zarr_format=3,
                consolidated=False,
                compute=True,
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


def _open_dataset(loc: Location, group: str | None) -> xr.Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return xr.open_zarr(
                loc.store(read_only=True), group=group, consolidated=False, zarr_format=3
            ).load()
    except Exception as e:  # zarr/xarray raise many types for broken stores
        where = loc.url + (f" (group {group})" if group else "")
        raise StoreError(f"{where} cannot be read as a dmf model: {type(e).__name__}: {e}") from e


def _index(values: np.ndarray) -> pd.Index:
    if values.dtype.kind in "iuf":
        return pd.Index(values)
    return pd.Index(np.asarray(values, dtype=object).astype(str).astype(object))


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


def _read(loc: Location, group: str | None, attrs: dict[str, Any]) -> FittedModel:
    where = loc.url + (f" (group {group})" if group else "")
    kind = attrs.get("dmf_kind")
    cls = model_class(kind) if isinstance(kind, str) else None
    if cls is None:
        raise StoreError(
            f"{where} holds a model of kind {kind!r}, which this dmf does not know "
            f"(known: {sorted(kinds())})"
        )
    ds = _open_dataset(loc, group)
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
            model.user_factors_ = np.ascontiguousarray(ds["user_factors"].values)
            model.item_factors_ = np.ascontiguousarray(ds["item_factors"].values)
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


def load(path: Any, **storage_options: Any) -> FittedModel:
    """Load a model saved with :meth:`save` (any fsspec URL).

    Returns the same class with the same fitted state, so predictions are
    identical.

    Parameters
    ----------
    path : str or os.PathLike
        Local path or fsspec URL.
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
    attrs = dict(open_group(loc, mode="r").attrs)
    _check_attrs(attrs, loc.url)
    return _read(loc, None, attrs)
