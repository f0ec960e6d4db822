"""``dmf serve``: a fitted model answering HTTP/JSON requests, folding in new events.

- :func:`serve` runs the server (what ``dmf serve STORE`` calls);
- :func:`create_app` builds the ASGI application around a :class:`Service`;
- :func:`open_service` loads a store (or the latest snapshot under a state
  directory) and replays the event log.

Needs the optional ``serve`` extra (Starlette, uvicorn). See docs/serving.md.
"""

from dmf.server._run import is_loopback, serve
from dmf.server._scoring import Scorer, reference_topk, top_k
from dmf.server._service import ApiError, Service
from dmf.server._state import StateDir, open_service


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """The ASGI application (imports Starlette only when called)."""
    from dmf.server._app import create_app as _create_app

    return _create_app(*args, **kwargs)


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
