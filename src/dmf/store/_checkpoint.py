"""Crash-safe checkpoints of a fit: factors, biases, RNG state and history in Zarr.

Layout of a checkpoint store (a Zarr v3 group on any fsspec location)::

    ckpt.zarr/                      root group, attrs {"dmf_checkpoint": 1}
        iter-00000007/              one group per saved iteration
            <array name>            one Zarr array per entry of ``arrays``
            zarr.json               attrs: iteration, state (JSON), array names,
                                    "complete": true  <- written last

A checkpoint counts only once its group's ``complete`` attribute is set; that
attribute is the last thing written (one small object put). On a local
filesystem the group is first written to a temporary sibling directory and
renamed into place, so a killed save leaves only a ``.tmp`` directory that is
ignored and removed by the next save. The previous complete checkpoint is
removed only after the new one is complete.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import numpy as np
import zarr

from dmf._errors import ParameterError, StoreError, check_int
from dmf.core._lazy import is_lazy
from dmf.store._location import Location, dumps_json, loads_json, open_group, resolve

__all__ = ["load_checkpoint", "save_checkpoint"]

#: Version of the checkpoint layout; a store with a higher one is refused.
CHECKPOINT_FORMAT = 1
_MARK = "dmf_checkpoint"
_ITER = re.compile(r"^iter-(\d{8,})(?:-[0-9a-f]+)?$")
#: Largest chunk written (bytes): big factor matrices are split along rows.
_CHUNK_BYTES = 1 << 26


def _iter_name(iteration: int) -> str:
    return f"iter-{iteration:08d}"


def _check_root(loc: Location, *, create: bool) -> bool:
    """Check ``loc`` is a checkpoint store (creating it when allowed); False if absent."""
    if not loc.exists() or loc.is_empty_dir():
        if not create:
            return False
        _create_root(loc)
        return True
    group = open_group(loc, mode="r")
    version = group.attrs.get(_MARK)
    if version is None:
        raise StoreError(
            f"{loc.url} is not a dmf checkpoint store (no {_MARK!r} attribute); "
            "choose another checkpoint path or remove it"
        )
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
        raise StoreError(
            f"{loc.url} is a checkpoint of format {version!r}, newer than this dmf "
            f"understands ({CHECKPOINT_FORMAT}); upgrade dmf"
        )
    return True


def _create_root(loc: Location) -> None:
    """Create the root group with its mark in one metadata write (renamed in locally)."""
    attrs = {_MARK: CHECKPOINT_FORMAT}
    if not loc.is_local:
        zarr.open_group(loc.store(read_only=False), mode="w", zarr_format=3, attributes=attrs)
        return
    tmp = loc.temp_sibling("creating")
    try:
        zarr.open_group(tmp.store(read_only=False), mode="w", zarr_format=3, attributes=attrs)
        if os.path.isdir(loc.root):  # an empty directory
            os.rmdir(loc.root)
        os.rename(tmp.root, loc.root)
    finally:
        tmp.rm()


def _iterations(loc: Location) -> list[tuple[int, str]]:
    """``(iteration, name)`` of every ``iter-*`` entry, newest first."""
    out = []
    for p in loc.fs.ls(loc.root, detail=False):
        name = p.rstrip("/").rsplit("/", 1)[-1]
        m = _ITER.match(name)
        if m:
            out.append((int(m.group(1)), name))
    return sorted(out, reverse=True)


def save_checkpoint(
    path: str, iteration: int, arrays: dict[str, np.ndarray], state: dict[str, Any]
) -> None:
    """Save the state of a fit after ``iteration``, crash-safely.

    A save killed part-way never leaves a checkpoint that
    :func:`load_checkpoint` returns, and the previous complete checkpoint is
    kept until the new one is complete (then it is removed).

    Parameters
    ----------
    path : str
        Local path or fsspec URL of the checkpoint store (created if absent;
        an existing store that is not a dmf checkpoint is a :class:`dmf.StoreError`).
    iteration : int
        Number of completed iterations (>= 0).
    arrays : dict of str to numpy.ndarray
        Factors, biases, ... (names must be plain identifiers).
    state : dict
        JSON-able extra state (history, learning rate, RNG state, ...). NumPy
        scalars and arrays are converted to numbers and lists.

    Examples
    --------
    >>> import numpy as np
    >>> from dmf.store._checkpoint import load_checkpoint, save_checkpoint
    >>> save_checkpoint("memory://doc-ckpt", 3, {"u": np.ones((2, 2))}, {"lr": 0.1})
    >>> it, arrays, state = load_checkpoint("memory://doc-ckpt")
    >>> it, arrays["u"].shape, state
    (3, (2, 2), {'lr': 0.1})
    """
    iteration = check_int("iteration", iteration, 0)
    if not isinstance(arrays, dict):
        raise ParameterError(f"arrays must be a dict of numpy arrays, got {type(arrays).__name__}")
    if not isinstance(state, dict):
        raise ParameterError(f"state must be a dict, got {type(state).__name__}")
    for name in arrays:
        if not (isinstance(name, str) and name.isidentifier()):
            raise ParameterError(f"checkpoint array name {name!r} must be a plain identifier")
    state_json = dumps_json(state, "checkpoint state")
    values = {}
    for name, value in arrays.items():
        # Dask arrays (blocks on the workers) are written by the workers below.
        a = value if is_lazy(value) else np.array(value, order="C", copy=None)
        if a.dtype == object:
            raise ParameterError(f"checkpoint array {name!r} has dtype object; use numbers")
        values[name] = a
    loc = resolve(path)
    _check_root(loc, create=True)
    if loc.is_local:
        # Write beside, rename in (atomic).
        final = loc.child(_iter_name(iteration))
        target = loc.child(f".tmp-{final.root.rsplit('/', 1)[-1]}-{os.getpid()}")
    else:
        # No rename: a fresh name per save, so re-saving an iteration never
        # touches the complete one until the new one is marked.
        final = target = loc.child(f"{_iter_name(iteration)}-{uuid.uuid4().hex[:8]}")
    target.rm()
    group = open_group(target, mode="w")
    here = "memory" in str(loc.fs.protocol)  # memory:// lives in this process only
    sources, targets = [], []
    for name, a in values.items():
        row_bytes = max(1, a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)))
        rows = max(1, min(a.shape[0], _CHUNK_BYTES // row_bytes)) if a.ndim else 0
        chunks = (rows, *a.shape[1:]) if a.ndim else ()
        arr = group.create_array(name, shape=a.shape, dtype=a.dtype, chunks=chunks)
        if not a.size:
            continue
        if is_lazy(a) and a.ndim and not here:
            # whole Zarr chunks per Dask chunk, so no two tasks write one chunk
            per = max(1, round(max(a.chunks[0]) / rows)) * rows
            sources.append(a.rechunk((per, *a.shape[1:])))
            targets.append(arr)
        else:
            arr[...] = np.asarray(a)
    if sources:
        import dask.array as da

        da.store(sources, targets, lock=False)
    group.attrs.update(
        {
            "iteration": iteration,
            "arrays": sorted(arrays),
            "state": state_json,
            "complete": True,  # last write: the checkpoint counts from here on
        }
    )
    if target is not final:
        if os.path.exists(final.root):
            # Same iteration saved again: move the old one aside, then drop it.
            trash = loc.child(f".old-{final.root.rsplit('/', 1)[-1]}-{os.getpid()}")
            trash.rm()
            os.rename(final.root, trash.root)
            os.rename(target.root, final.root)
            trash.rm()
        else:
            os.rename(target.root, final.root)
    _prune(loc, keep=final.root.rsplit("/", 1)[-1])


def _prune(loc: Location, keep: str) -> None:
    """Remove every other checkpoint and leftover temporary directory."""
    for p in loc.fs.ls(loc.root, detail=False):
        name = p.rstrip("/").rsplit("/", 1)[-1]
        if name == keep:
            continue
        if _ITER.match(name) or name.startswith((".tmp-", ".old-")):
            try:
                loc.fs.rm(p, recursive=True)
            except FileNotFoundError:  # pragma: no cover - raced with another pruner
                pass


def load_checkpoint(path: str) -> tuple[int, dict[str, np.ndarray], dict[str, Any]] | None:
    """The newest complete checkpoint at ``path``, or ``None`` if there is none.

    Parameters
    ----------
    path : str
        Local path or fsspec URL given to :func:`save_checkpoint`.

    Returns
    -------
    (iteration, arrays, state) or None
        ``None`` when ``path`` does not exist, is empty, or holds no complete
        checkpoint (e.g. only a save that was killed).

    Raises
    ------
    dmf.StoreError
        ``path`` holds something that is not a dmf checkpoint, one of a newer
        format, or a complete checkpoint whose data cannot be read.

    Examples
    --------
    >>> from dmf.store._checkpoint import load_checkpoint
    >>> load_checkpoint("memory://no-such-checkpoint") is None
    True
    """
    loc = resolve(path)
    if not _check_root(loc, create=False):
        return None
    for iteration, name in _iterations(loc):
        sub = loc.child(name)
        try:
            group = open_group(sub, mode="r")
        except StoreError:
            continue  # a save killed before its group metadata was written
        attrs = dict(group.attrs)
        if attrs.get("complete") is not True:
            continue
        if attrs.get("iteration") != iteration:
            raise StoreError(
                f"checkpoint {sub.url} says iteration {attrs.get('iteration')!r}, "
                f"its name says {iteration}: the store is corrupt"
            )
        state = loads_json(attrs.get("state"), f"state of checkpoint {sub.url}")
        names = attrs.get("arrays")
        if not isinstance(names, list) or not isinstance(state, dict):
            raise StoreError(f"checkpoint {sub.url} has malformed attributes: the store is corrupt")
        arrays: dict[str, np.ndarray] = {}
        for n in names:
            try:
                arrays[n] = np.asarray(group[n][...])
            except Exception as e:  # zarr raises a range of types for bad chunks
                raise StoreError(
                    f"checkpoint {sub.url}: array {n!r} cannot be read ({type(e).__name__}: {e})"
                ) from e
        return iteration, arrays, state
    return None
