"""A server's state directory: event log, snapshots, and which model they belong to.

Layout of ``--state DIR``::

    STORE                        the item side the state belongs to (fingerprint)
    CURRENT                      {"seq": S, "snapshot": "snapshot-<S>"}, replaced atomically
    snapshot-<S>/model.zarr      the model with every changed user folded in (dmf.load-able)
    snapshot-<S>/history.zarr    those users' full histories
    events-<first seq>.log       the event log (see :mod:`dmf.server._log`)

A snapshot is written beside the current one and becomes current only when
``CURRENT`` is renamed over; a crash before that leaves the old snapshot and
the full log, so nothing is lost either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import numpy as np

import dmf
import dmf.store
from dmf.server._history import Histories, read_interactions
from dmf.server._log import EventLog, _fsync_dir
from dmf.server._service import Service
from dmf.server._titles import read_titles

__all__ = ["StateDir", "open_service"]


def item_fingerprint(model: Any) -> str:
    """SHA-256 of the fixed item side: ids, factors and biases."""
    h = hashlib.sha256()
    h.update(np.asarray(model.items_.astype(str)).astype("U").tobytes())
    factors = getattr(model, "item_factors_", None)
    if factors is not None:
        h.update(np.ascontiguousarray(factors).tobytes())
    h.update(np.ascontiguousarray(model.item_bias_).tobytes())
    return h.hexdigest()


def _write_json(path: str, value: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


class StateDir:
    """The state directory of one server (see the module docstring).

    Examples
    --------
    >>> import tempfile
    >>> from dmf.server import StateDir
    >>> state = StateDir(tempfile.mkdtemp())
    >>> state.log.replay(after=0), state.log.append({"user": 1, "items": [2], "weights": [1.0]})
    ([], 1)
    >>> state.log.close()
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        os.makedirs(self.path, exist_ok=True)
        self.log = EventLog(self.path)
        self.current = self._read_json("CURRENT") or {"seq": 0, "snapshot": None}

    def _read_json(self, name: str) -> Any:
        path = os.path.join(self.path, name)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except ValueError as e:
            raise dmf.StoreError(f"{path} is damaged: {e}") from e

    def model_path(self, store: str) -> str:
        snap = self.current.get("snapshot")
        return store if snap is None else os.path.join(self.path, snap, "model.zarr")

    def check_owner(self, model: Any, store: str) -> None:
        """Refuse a state directory written for a model with other item factors."""
        mine = item_fingerprint(model)
        owner = self._read_json("STORE")
        if owner is None:
            _write_json(os.path.join(self.path, "STORE"), {"store": store, "items": mine})
        elif owner.get("items") != mine:
            raise dmf.StoreError(
                f"state directory {self.path} belongs to the model {owner.get('store')!r}, whose "
                "item factors differ from this store's: pass a fresh --state directory"
            )

    def write_snapshot(
        self,
        model: Any,
        changed: dict[Any, tuple[np.ndarray, np.ndarray]],
        seq: int,
        items: Any,
        extras: dict[str, Any] | None = None,
    ) -> str:
        """Write a snapshot covering events ``<= seq`` and make it current.

        ``extras`` are passed to ``model.save`` (the training interactions and
        titles the server was started with), so a restart from the snapshot has them.
        """
        name = f"snapshot-{seq:012d}"
        final = os.path.join(self.path, name)
        tmp = final + ".writing"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        model.save(os.path.join(tmp, "model.zarr"), **(extras or {}))
        Histories.write(os.path.join(tmp, "history.zarr"), changed, items)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _fsync_dir(self.path)
        old = self.current.get("snapshot")
        self.current = {"seq": seq, "snapshot": name}
        _write_json(os.path.join(self.path, "CURRENT"), self.current)
        self.log.drop_through(seq)
        if old and old != name:
            shutil.rmtree(os.path.join(self.path, old), ignore_errors=True)
        return name


def _stored_interactions(model: Any, path: str, store: str) -> Histories:
    """The training interactions kept in the store (a snapshot's, else the original's)."""
    for where in dict.fromkeys([path, store]):
        found = dmf.store.read_interactions(where)
        if found is not None:
            indptr, codes, weights = found
            if len(indptr) - 1 > len(model.users_) or (
                len(codes) and int(codes.max()) >= len(model.items_)
            ):
                raise dmf.StoreError(f"{where}: the interactions do not fit the model's ids")
            return Histories(len(model.users_), indptr, codes, weights)
    return Histories(len(model.users_))


def _stored_titles(path: str, store: str) -> dict[int, str] | None:
    for where in dict.fromkeys([path, store]):
        found = dmf.store.read_titles(where)
        if found is not None:
            return {c: t for c, t in enumerate(found.tolist()) if t}
    return None


def open_service(
    store: str,
    *,
    state: str | None = None,
    interactions: str | None = None,
    shards: int = 1,
    max_k: int = 1000,
    titles: str | None = None,
    index: str = "exact",
    nprobe: int = 32,
) -> tuple[Service, StateDir | None, int]:
    """Load the model (or the state's latest snapshot) and replay the event log.

    Returns the service, the state directory (None without ``state``) and the
    number of events replayed. Parameters as in :func:`serve`.

    Examples
    --------
    >>> import dmf
    >>> from dmf.server import open_service
    >>> train = dmf.testing.random_ratings(n_users=20, n_items=15, seed=0)
    >>> url = dmf.Baseline().fit(train).save("memory://doc/svc.zarr", overwrite=True)
    >>> service, state, replayed = open_service(url)
    >>> [row["item"] for row in service.recommend(1, k=2)] == (
    ...     dmf.load(url).recommend([1], k=2)["item"].tolist())
    True
    """
    state_dir = StateDir(state) if state is not None else None
    path = store if state_dir is None else state_dir.model_path(store)
    model = dmf.load(path, lazy=False)  # every request reads the factors: keep them in memory
    if state_dir is not None:
        state_dir.check_owner(model, store)
    if interactions is not None:
        histories = read_interactions(interactions, model.users_, model.items_)
    else:
        histories = _stored_interactions(model, path, store)
    if titles is not None:
        title_map = read_titles(titles, model.items_)
    else:
        title_map = _stored_titles(path, store)
    service = Service(
        model, histories, shards=shards, max_k=max_k, titles=title_map, index=index, nprobe=nprobe
    )
    replayed = 0
    if state_dir is not None:
        snap = state_dir.current.get("snapshot")
        if snap is not None:
            histories.read_changed(os.path.join(state_dir.path, snap, "history.zarr"), model.items_)
        events = state_dir.log.replay(after=int(state_dir.current.get("seq", 0)))
        if events:
            service.apply_events(events)
        replayed = len(events)
    return service, state_dir, replayed
