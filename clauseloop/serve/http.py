"""HTTP plumbing of `clauseloop serve`: the body-size limit, the bearer key, JSON errors, the lazy /v1 app.

Every API error is ``{"error": {"message", "field"}}`` with a message that says the fix: 400 for a body that is
not a text contract, 401 for a missing or wrong key, 404 for an unknown id, 413 for a body over the limit,
422 for malformed JSON or a missing/invalid field (``field`` names it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


class BodyTooLarge(Exception):
    pass


def error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"message": message, "field": field}})


def check_key(request: Request, api_key: str | None) -> None:
    """401 unless ``Authorization: Bearer KEY`` matches (when a key is configured)."""
    if api_key is None:
        return
    given = request.headers.get("authorization", "")
    token = given[7:].strip() if given[:7].lower() == "bearer " else ""
    if not secrets.compare_digest(token.encode(), api_key.encode()):
        raise ApiError(401, "missing or wrong API key; send `Authorization: Bearer KEY`", "authorization")


def field_name(location: tuple | list) -> str:
    """``("body", "categories", 2)`` → ``categories[2]``; the body itself → ``body``."""
    parts = [str(part) for part in location if part != "body"]
    name = ""
    for part in parts:
        name += f"[{part}]" if part.isdigit() else (f".{part}" if name else part)
    return name or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_, exc: ApiError):
        return error_response(exc.status, exc.message, exc.field)

    @app.exception_handler(BodyTooLarge)
    async def too_large(_, exc: BodyTooLarge):
        return error_response(413, str(exc), "body")

    @app.exception_handler(RequestValidationError)
    async def invalid(_, exc: RequestValidationError):
        problems = list(exc.errors())
        first = problems[0] if problems else {"loc": ("body",), "msg": "invalid", "type": ""}
        field = field_name(first.get("loc", ()))
        if first.get("type") == "json_invalid":
            detail = (first.get("ctx") or {}).get("error", "")
            return error_response(422, f"malformed JSON in the request body ({detail}); send a JSON object", "body")
        message = "; ".join(f"{field_name(p.get('loc', ()))}: {p.get('msg')}" for p in problems)
        return error_response(422, f"invalid request: {message}", field)

    @app.exception_handler(Exception)
    async def server_error(_, exc: Exception):
        logger.exception("request failed")
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length or as it streams in."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        message = f"the request body is over the {self.max_bytes:,}-byte limit; send a smaller contract " \
                  "(or raise --max-body-bytes)"
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error_response(413, message, "body")(scope, receive, send)
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(message)
            return event

        await self.app(scope, limited_receive, send)


class OpenAIRoutes:
    """ASGI middleware: ``/v1/...`` goes to the engine's OpenAI-compatible app, built on first use."""

    def __init__(self, app: Any, build: Callable[[], Any]):
        self.app, self._build, self._inner, self._lock = app, build, None, threading.Lock()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/v1" or path.startswith("/v1/")):
            return await self.app(scope, receive, send)
        if self._inner is None:
            try:
                await asyncio.to_thread(self._ensure)
            except ApiError as error:
                body = {"error": {"message": error.message, "type": "invalid_request_error", "param": None,
                                  "code": "model_not_found"}}
                return await JSONResponse(body, status_code=error.status)(scope, receive, send)
        await self._inner(scope, receive, send)

    def _ensure(self) -> None:
        with self._lock:
            if self._inner is None:
                self._inner = self._build()


def sse_event(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
