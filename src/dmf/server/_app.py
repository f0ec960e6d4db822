"""The HTTP/JSON application (Starlette): routes, auth, body limit, errors, metrics.

Every refusal is a 4xx with ``{"error": "..."}`` naming the problem; an
unexpected exception is a 500 with the same shape, and the server goes on
serving. Events are logged (fsync'ed) before they are folded in and before
the answer, under one lock, so the log's order is the order users see.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import traceback
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import dmf
from dmf.server._batch import Batcher
from dmf.server._metrics import Metrics
from dmf.server._openapi import openapi
from dmf.server._page import PAGE
from dmf.server._service import ApiError, Service
from dmf.server._state import StateDir

__all__ = ["create_app"]

#: Largest request body accepted (bytes).
DEFAULT_BODY_LIMIT = 1 << 20

_PUBLIC = {("GET", "/"), ("GET", "/health")}


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _json_bytes(value: Any) -> bytes:
    """JSON as Starlette's JSONResponse renders it."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class _Guard:
    """ASGI middleware: bearer token, body size from the header, metrics, last-resort errors.

    ``fast`` maps ``(method, path)`` to a handler of the parsed query string that
    answers a JSON object, served here without the framework's request and
    response objects: the hot path (``GET /recommend``) costs less CPU per request.
    """

    def __init__(
        self,
        app: Any,
        token: str | None,
        body_limit: int,
        metrics: Metrics,
        fast: dict[tuple[str, str], Any] | None = None,
    ) -> None:
        self.app, self.token, self.body_limit, self.metrics = app, token, body_limit, metrics
        self.fast = fast or {}
        self.routes = {"/", "/health", "/recommend", "/events", "/similar-items", "/popular",
                       "/snapshot", "/metrics", "/openapi.json"}  # fmt: skip

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method, path = scope["method"], scope["path"]
        route = path if path in self.routes else "other"
        status = {"code": 500}

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refuse(scope, method, path)
            fast = self.fast.get((method, path))
            if refusal is not None:
                await refusal(scope, receive, send_status)
            elif fast is not None:
                await self._answer(fast, scope, send_status)
            else:
                await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(method, route, status["code"], time.perf_counter() - start)

    @staticmethod
    async def _answer(handler: Any, scope: dict, send: Any) -> None:
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        try:
            code, value = 200, await handler(query)
        except ApiError as e:
            code, value = e.status, {"error": e.message}
        except dmf.DMFError as e:
            code, value = 422, {"error": str(e)}
        except Exception as e:
            traceback.print_exception(e, file=sys.stderr)
            code, value = 500, {"error": f"internal error: {type(e).__name__}: {e}"}
        body = _json_bytes(value)
        headers = [(b"content-length", str(len(body)).encode()),
                   (b"content-type", b"application/json")]  # fmt: skip
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _refuse(self, scope: dict, method: str, path: str) -> Response | None:
        headers = dict(scope["headers"])
        if self.token is not None and (method, path) not in _PUBLIC:
            given = headers.get(b"authorization", b"").decode("latin-1")
            want = "Bearer " + self.token
            if not hmac.compare_digest(given.encode(), want.encode()):
                return _error(
                    401, "missing or wrong bearer token", **{"www-authenticate": "Bearer"}
                )
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return _error(400, f"content-length {length!r} is not an integer")
            if n > self.body_limit:
                return _error(
                    413, f"request body of {n} bytes exceeds the limit of {self.body_limit}"
                )
        return None


async def _body(request: Request, limit: int) -> dict[str, Any]:
    """The JSON object of the body, at most ``limit`` bytes (streamed bodies too)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    try:
        value = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"malformed JSON body: {e}") from e
    if not isinstance(value, dict):
        raise ApiError(422, f"the body must be a JSON object, got {type(value).__name__}")
    return value


def _keys(what: str, given: Any, required: set[str], optional: set[str]) -> None:
    missing = required - set(given)
    extra = set(given) - required - optional
    if missing:
        raise ApiError(422, f"{what} lacks {sorted(missing)} (required: {sorted(required)})")
    if extra:
        raise ApiError(
            422,
            f"{what} has unknown field(s) {sorted(extra)} (allowed: {sorted(required | optional)})",
        )


def _flag(raw: str, name: str) -> bool:
    low = raw.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ApiError(422, f"{name}={raw!r} is not allowed: {name} must be true or false")


def create_app(
    service: Service,
    state: StateDir | None = None,
    *,
    token: str | None = None,
    body_limit: int = DEFAULT_BODY_LIMIT,
    snapshot_every: int | None = None,
) -> Any:
    """The ASGI application serving ``service`` (see :mod:`dmf.server`)."""
    metrics = Metrics()
    batcher = Batcher(service.scorer)
    events_lock = asyncio.Lock()
    snap: dict[str, Any] = {"running": None, "last": None, "error": None}
    log = state.log if state is not None else None

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "kind": service.model.kind,
                "users": len(service.users),
                "items": service.n_allowed,
                "rank": service.rank,
                "user_ids": "int" if service.int_users else "str",
                "implicit": service.implicit,
                "default_weight": service.default_weight,
                "shards": service.scorer.n_shards,
                "index": service.index,
                "training_interactions": service.histories.has_training,
                "titles": bool(service.titles),
                "durable": state is not None,
                "events": log.seq if log is not None else 0,
                "changed_users": len(service.histories.changed),
                "snapshot": state.current if state is not None else None,
                "token_required": token is not None,
            }
        )

    async def recommend_get(request: Request) -> Response:
        return JSONResponse(await recommend_query(dict(request.query_params)))

    async def recommend_query(q: dict[str, str]) -> dict[str, Any]:
        _keys("the query", q.keys(), {"user"}, {"k", "items", "exclude_seen"})
        user = service.parse_user(q["user"], text=True)
        k = service.check_k(q.get("k", "10"), text=True)
        cand = None
        if "items" in q:
            cand = service.item_codes([s for s in q["items"].split(",") if s], text=True)
        exclude = _flag(q.get("exclude_seen", "true"), "exclude_seen")
        if cand is not None:
            return {"user": user, "items": service.recommend(user, k, cand, exclude)}
        vec, seen = service.query(user, exclude)
        return {"user": user, "items": service.answer(*await batcher.top_k(vec, seen, k))}

    async def recommend_post(request: Request) -> Response:
        body = await _body(request, body_limit)
        _keys("the body", body, {"items"}, {"k", "weights"})
        k = service.check_k(body.get("k", 10))
        codes = service.item_codes(body["items"])
        weights = service.weights(body.get("weights"), len(codes))
        vec, seen = service.anonymous(codes, weights)
        items = service.answer(*await batcher.top_k(vec, seen, k))
        return JSONResponse({"user": None, "items": items})

    async def events(request: Request) -> Response:
        body = await _body(request, body_limit)
        _keys("the event", body, {"user", "items"}, {"weights"})
        if state is None:
            raise ApiError(
                409, "this server has no --state directory, so events cannot be stored durably"
            )
        user = service.parse_user(body["user"])
        codes = service.item_codes(body["items"])
        weights = service.weights(body.get("weights"), len(codes))
        async with events_lock:
            user, history, vec = service.prepare(user, codes, weights)
            record = {
                "user": user,
                "items": service.item_values[codes].tolist(),
                "weights": weights.tolist(),
            }
            seq = await anyio.to_thread.run_sync(state.log.append, record)
            service.commit(user, history, vec)
        due = snapshot_every is not None and seq - int(state.current["seq"]) >= snapshot_every
        if due and snap["running"] is None:
            snap["running"] = asyncio.ensure_future(take_snapshot())
        return JSONResponse({"user": user, "seq": seq, "history": len(history[0])})

    async def take_snapshot() -> dict[str, Any]:
        assert state is not None
        try:
            async with events_lock:
                seq = state.log.rotate()
                changed = dict(service.histories.changed)
                vectors = dict(service.vectors)
            if not changed or seq == int(state.current["seq"]):
                return {"seq": seq, "snapshot": state.current.get("snapshot")}
            model = await anyio.to_thread.run_sync(service.snapshot_model, changed, vectors)
            name = await anyio.to_thread.run_sync(
                state.write_snapshot, model, changed, seq, service.item_values, service.extras()
            )
            snap["last"], snap["error"] = name, None
            return {"seq": seq, "snapshot": name}
        except Exception as e:
            snap["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc(file=sys.stderr)
            raise
        finally:
            snap["running"] = None

    async def snapshot(request: Request) -> Response:
        if state is None:
            raise ApiError(409, "this server has no --state directory: nothing to snapshot")
        if snap["running"] is not None:
            raise ApiError(409, "a snapshot is being written; try again when it is done")
        snap["running"] = asyncio.ensure_future(take_snapshot())
        return JSONResponse(await snap["running"])

    async def similar(request: Request) -> Response:
        q = request.query_params
        _keys("the query", q.keys(), {"item"}, {"k"})
        k = service.check_k(q.get("k", "10"), text=True)
        item = service._parse_id(q["item"], service.int_items, "item", True)
        return JSONResponse({"item": item, "items": service.similar_items(item, k)})

    async def popular(request: Request) -> Response:
        _keys("the query", request.query_params.keys(), set(), {"k"})
        k = service.check_k(request.query_params.get("k", "10"), text=True)
        return JSONResponse({"user": None, "items": service.popular(k)})

    async def metrics_text(request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    async def spec(request: Request) -> Response:
        return JSONResponse(openapi(dmf.__version__))

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE)

    async def api_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ApiError):
            return _error(exc.status, exc.message)
        if isinstance(exc, dmf.DMFError):
            return _error(422, str(exc))
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:  # routing: 404, 405
            detail = getattr(exc, "detail", "")
            return _error(status, f"{request.method} {request.url.path}: {detail}")
        traceback.print_exception(exc, file=sys.stderr)
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    routes = [
        Route("/", page),
        Route("/health", health),
        Route("/recommend", recommend_get, methods=["GET"]),
        Route("/recommend", recommend_post, methods=["POST"]),
        Route("/events", events, methods=["POST"]),
        Route("/similar-items", similar),
        Route("/popular", popular),
        Route("/snapshot", snapshot, methods=["POST"]),
        Route("/metrics", metrics_text),
        Route("/openapi.json", spec),
    ]
    from starlette.exceptions import HTTPException

    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: api_error,
            dmf.DMFError: api_error,
            HTTPException: api_error,
            Exception: api_error,
        },
    )
    metrics.gauge("dmf_events_total", "Events acknowledged since the state began",
                  lambda: float(log.seq if log is not None else 0))  # fmt: skip
    metrics.gauge("dmf_changed_users", "Users whose history changed through events",
                  lambda: float(len(service.histories.changed)))  # fmt: skip
    metrics.gauge("dmf_score_batches_total", "Batches of users scored together",
                  lambda: float(batcher.batches))  # fmt: skip
    metrics.gauge("dmf_scored_requests_total", "Requests scored in those batches",
                  lambda: float(batcher.requests))  # fmt: skip
    return _Guard(app, token, body_limit, metrics, {("GET", "/recommend"): recommend_query})
