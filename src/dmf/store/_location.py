"""Where models and checkpoints live: fsspec URLs opened as Zarr stores.

Local paths use zarr's ``LocalStore`` (so a save can go to a temporary
sibling directory and be renamed into place, which is atomic on POSIX);
any other fsspec URL (``memory://``, ``s3://``, ``gs://``, ...) uses
``FsspecStore``, where completeness is a marker written last.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import zarr
from fsspec.implementations.local import LocalFileSystem
from zarr.storage import FsspecStore, LocalStore

from dmf._errors import ParameterError, StoreError

__all__ = ["Location", "dumps_json", "loads_json", "resolve"]


@dataclass(frozen=True)
class Location:
    """A resolved store location: the filesystem, the path in it, the URL."""

    fs: Any
    root: str
    url: str
    storage_options: dict[str, Any]

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def child(self, name: str) -> Location:
        root = self.root.rstrip("/") + "/" + name
        url = root if self.is_local else self.fs.unstrip_protocol(root)
        return Location(self.fs, root, url, self.storage_options)

    def sibling(self, name: str) -> Location:
        parent = self.root.rstrip("/").rsplit("/", 1)[0]
        root = parent + "/" + name
        url = root if self.is_local else self.fs.unstrip_protocol(root)
        return Location(self.fs, root, url, self.storage_options)

    def exists(self) -> bool:
        return bool(self.fs.exists(self.root))

    def is_empty_dir(self) -> bool:
        try:
            return self.fs.isdir(self.root) and not self.fs.ls(self.root, detail=False)
        except FileNotFoundError:
            return True

    def store(self, read_only: bool) -> Any:
        """A zarr store rooted here."""
        if self.is_local:
            if not read_only:
                os.makedirs(self.root, exist_ok=True)
            return LocalStore(self.root, read_only=read_only)
        return FsspecStore.from_url(
            self.url, storage_options=self.storage_options or None, read_only=read_only
        )

    def rm(self) -> None:
        if self.fs.exists(self.root):
            self.fs.rm(self.root, recursive=True)

    def temp_sibling(self, tag: str) -> Location:
        base = self.root.rstrip("/").rsplit("/", 1)[-1]
        return self.sibling(f".{base}.{tag}-{uuid.uuid4().hex[:12]}")


def resolve(path: Any, storage_options: dict[str, Any] | None = None) -> Location:
    """Resolve a path or fsspec URL; raise :class:`ParameterError` on anything else."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise ParameterError(f"path={path!r} is not allowed: path must be a non-empty str or URL")
    opts = dict(storage_options or {})
    try:
        fs, root = fsspec.core.url_to_fs(path, **opts)
    except (ValueError, ImportError) as e:
        raise ParameterError(f"path={path!r} cannot be opened by fsspec: {e}") from e
    if isinstance(fs, LocalFileSystem):
        root = os.path.abspath(root)
        url = root
    else:
        root = root.rstrip("/")
        url = fs.unstrip_protocol(root)
    return Location(fs, root, url, opts)


def open_group(loc: Location, mode: str) -> zarr.Group:
    """Open the zarr group at ``loc``; a read that fails is a :class:`StoreError`."""
    try:
        return zarr.open_group(loc.store(read_only=mode == "r"), mode=mode, zarr_format=3)
    except (FileNotFoundError, KeyError, ValueError, TypeError, OSError) as e:
        if mode != "r":
            raise
        raise StoreError(f"{loc.url} is not a readable Zarr v3 group: {e}") from e


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, np.dtype):
        return obj.name
    if isinstance(obj, type) and issubclass(obj, np.generic):
        return np.dtype(obj).name  # e.g. dtype=numpy.float32 -> "float32"
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def dumps_json(obj: Any, what: str) -> str:
    """JSON text of ``obj`` (numpy scalars and arrays become numbers and lists).

    NaN and infinities are kept (``NaN``, ``Infinity``), as Python's json does.
    """
    try:
        return json.dumps(obj, default=_jsonable)
    except (TypeError, ValueError) as e:
        raise ParameterError(f"{what} cannot be stored as JSON: {e}") from e


def loads_json(text: Any, what: str) -> Any:
    if not isinstance(text, str):
        raise StoreError(f"{what} is missing or not JSON text (got {type(text).__name__})")
    try:
        return json.loads(text)
    except ValueError as e:
        raise StoreError(f"{what} is not valid JSON: {e}") from e
