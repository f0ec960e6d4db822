"""``dmf serve``: a fitted model answering HTTP/JSON requests, folding in new events.

- :func:`serve` runs the server (what ``dmf serve STORE`` calls);
- :func:`create_app` builds the ASGI application around a :class:`Service`;
- :func:`open_service` loads a store (or the latest snapshot under a state
  directory) and replays the event log;
- :class:`Scorer` is the exact, sharded top-k (:func:`top_k`, with the plain
  :func:`reference_topk` beside it).

The HTTP part needs the optional ``serve`` extra (Starlette, uvicorn); this
package imports without it. See the serving page of the user guide.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dmf.server._run import is_loopback, serve
    from dmf.server._scoring import Scorer, reference_topk, top_k
    from dmf.server._service import ApiError, Service
    from dmf.server._state import StateDir, open_service

#: Where each public name lives; loaded on first use so the CLI stays cheap to start.
_LAZY = {
    "is_loopback": "dmf.server._run",
    "serve": "dmf.server._run",
    "Scorer": "dmf.server._scoring",
    "reference_topk": "dmf.server._scoring",
    "top_k": "dmf.server._scoring",
    "ApiError": "dmf.server._service",
    "Service": "dmf.server._service",
    "StateDir": "dmf.server._state",
    "open_service": "dmf.server._state",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dmf.server' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def create_app(
    service: Service,
    state: StateDir | None = None,
    *,
    token: str | None = None,
    body_limit: int = 1 << 20,
    snapshot_every: int | None = None,
) -> Any:
    """The ASGI application serving ``service`` (Starlette is imported only here).

    Parameters
    ----------
    service : Service
        What answers: model, histories, scorer (see :func:`open_service`).
    state : StateDir, optional
        Where events are logged; without it ``POST /events`` answers 409.
    token : str, optional
        Bearer token every request but ``GET /`` and ``GET /health`` must carry.
    body_limit : int
        Largest request body in bytes (413 beyond).
    snapshot_every : int, optional
        Write a snapshot after this many events since the last one.

    Returns
    -------
    ASGI application
        Run it with uvicorn (what :func:`serve` does) or any ASGI server.

    Examples
    --------
    >>> import asyncio, dmf, httpx
    >>> from dmf.server import create_app, open_service
    >>> train = dmf.testing.random_ratings(n_users=20, n_items=15, seed=0)
    >>> url = dmf.ALS(rank=3, max_iter=2).fit(train).save("memory://doc/app.zarr", overwrite=True)
    >>> service, _, _ = open_service(url)
    >>> async def ask(*paths):
    ...     transport = httpx.ASGITransport(app=create_app(service))
    ...     async with httpx.AsyncClient(transport=transport, base_url="http://dmf") as client:
    ...         return [(await client.get(p)).json() for p in paths]
    >>> health, recs, unknown = asyncio.run(ask("/health", "/recommend?user=1&k=3",
    ...                                         "/recommend?user=999"))
    >>> health["status"], len(recs["items"])
    ('ok', 3)
    >>> unknown["error"]
    "user 999 is unknown: not in the model's training data and no events"
    """
    from dmf.server._app import create_app as _create_app

    return _create_app(
        service, state, token=token, body_limit=body_limit, snapshot_every=snapshot_every
    )


__all__ = [
    "ApiError",
    "Scorer",
    "Service",
    "StateDir",
    "create_app",
    "is_loopback",
    "open_service",
    "reference_topk",
    "serve",
    "top_k",
]
