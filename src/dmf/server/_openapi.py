"""The OpenAPI 3.1 description of the server, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi"]

_ID = {"oneOf": [{"type": "integer"}, {"type": "string"}], "description": "An original id"}
_ERROR = {
    "description": "Refused: the error names the problem",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}
_ITEMS = {
    "type": "object",
    "properties": {
        "user": _ID,
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "item": _ID,
                    "score": {"type": "number"},
                    "title": {"type": "string"},
                },
                "required": ["item", "score"],
            },
        },
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


_K = _query("k", {"type": "integer", "minimum": 1, "default": 10}, "Items to return")
_FAIL = {"401": _ERROR, "404": _ERROR, "413": _ERROR, "422": _ERROR}


def openapi(version: str) -> dict[str, Any]:
    """The description, with the running dmf's version."""
    history = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ID, "minItems": 1},
            "weights": {"type": "array", "items": {"type": "number"}},
            "k": {"type": "integer", "minimum": 1, "default": 10},
        },
        "required": ["items"],
    }
    event = {
        "type": "object",
        "properties": {
            "user": _ID,
            "items": {"type": "array", "items": _ID, "minItems": 1},
            "weights": {"type": "array", "items": {"type": "number"}},
        },
        "required": ["user", "items"],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "dmf serve", "version": version},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/health": {
                "get": {
                    "summary": "Liveness and model summary",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "Up")},
                }
            },
            "/recommend": {
                "get": {
                    "summary": "Top-k items for a known user (seen items excluded)",
                    "parameters": [
                        _query("user", _ID, "User id", required=True),
                        _K,
                        _query("items", {"type": "string"}, "Comma-separated candidate ids"),
                        _query(
                            "exclude_seen",
                            {"type": "boolean", "default": True},
                            "Leave out the user's items",
                        ),
                    ],
                    "responses": {"200": _json(_ITEMS, "Ranked items"), **_FAIL},
                },
                "post": {
                    "summary": "Top-k items for an anonymous history (folded in on the fly)",
                    "requestBody": {"content": {"application/json": {"schema": history}}},
                    "responses": {"200": _json(_ITEMS, "Ranked items"), "400": _ERROR, **_FAIL},
                },
            },
            "/events": {
                "post": {
                    "summary": "Record a user's interactions: logged durably, then folded in",
                    "requestBody": {"content": {"application/json": {"schema": event}}},
                    "responses": {
                        "200": _json({"type": "object"}, "Stored (fsync'ed) and folded in"),
                        "400": _ERROR,
                        "409": _ERROR,
                        **_FAIL,
                    },
                }
            },
            "/similar-items": {
                "get": {
                    "summary": "Items most similar to one item (cosine of item factors)",
                    "parameters": [_query("item", _ID, "Item id", required=True), _K],
                    "responses": {"200": _json(_ITEMS, "Ranked items"), **_FAIL},
                }
            },
            "/popular": {
                "get": {
                    "summary": "Items with the most training interactions",
                    "parameters": [_K],
                    "responses": {"200": _json(_ITEMS, "Ranked items"), **_FAIL},
                }
            },
            "/snapshot": {
                "post": {
                    "summary": "Fold the event log into a new model store under --state",
                    "responses": {"200": _json({"type": "object"}, "Written"), "409": _ERROR},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus text: request counts and latencies",
                    "responses": {"200": {"description": "text/plain"}},
                }
            },
            "/": {
                "get": {
                    "summary": "A page to try the model",
                    "security": [],
                    "responses": {"200": {"description": "text/html"}},
                }
            },
        },
    }
