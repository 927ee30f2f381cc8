"""An OpenAI-compatible server over a ``LocalEngine``: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``.

Concurrent HTTP requests land in the same batching queue as in-process ``LocalLM`` calls, so clients that speak
the OpenAI API — ``dspy.LM("openai/NAME", api_base="http://127.0.0.1:PORT/v1", api_key="...")``, LiteLLM, the
openai SDK — get batched generation from a local model. Bad requests get a 4xx with an OpenAI-shaped error
(``{"error": {"message", "type", "param", "code"}}``) whose message says the fix; the server keeps serving.
``stream: true`` answers with server-sent events in OpenAI's chunk format; the engine decodes whole results, so
each choice arrives as one content chunk (see :mod:`clauseloop.engine.completions`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from clauseloop.engine.batcher import LocalEngine
from clauseloop.engine.completions import (
    SSE_MEDIA_TYPE,
    CompletionRequest,
    chat_stream,
    completion_requests,
    gather,
    text_completion_body,
    text_stream,
)
from clauseloop.engine.config import ServerConfig
from clauseloop.engine.model import text_messages
from clauseloop.engine.requests import GenerationRequest, GenerationResult, RequestError
from clauseloop.models import split_adapter

logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


class ChatCompletionRequest(BaseModel):
    # Other OpenAI fields (user, metadata, service_tier, ...) are accepted and ignored, as vLLM does.
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    n: int = 1
    stop: str | list[str] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    seed: int | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    response_format: dict[str, Any] | None = None
    stream_options: dict[str, Any] | None = None


def default_served_name(model: str, adapter: str | None = None) -> str:
    """``smollm2-135m-instruct``, ``my-model`` for ``runs/my-model``, ``NAME+ADAPTER`` with an adapter."""
    name = Path(model).name if Path(model).expanduser().exists() else model
    return f"{name}+{Path(adapter).name}" if adapter else name


def create_app(engine: LocalEngine, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    served_name = config.served_name or default_served_name(*split_adapter(engine.name))
    app = FastAPI(title="clauseloop serve-lm", version="1")
    _install_error_handlers(app)

    def authorize(request: Request) -> None:
        if config.api_key is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not secrets.compare_digest(given, config.api_key):
            raise ApiError(401, "missing or wrong API key; send `Authorization: Bearer KEY`", code="invalid_api_key")

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict:
        authorize(request)
        return {"object": "list", "data": [{"id": served_name, "object": "model", "owned_by": "clauseloop"}]}

    def check_model(model: str) -> None:
        if model not in {served_name, engine.name}:
            raise ApiError(404, f"model {model!r} is not served here; use {served_name!r}", code="model_not_found")

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> dict | StreamingResponse:
        authorize(request)
        check_model(body.model)
        generations = await asyncio.to_thread(generation_requests, engine, body)
        pending = gather([engine.submit(generation) for generation in generations])
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            events = chat_stream(served_name, engine.loaded.fingerprint, len(generations), pending, _logprobs_body,
                                 usage)
            return StreamingResponse(events, media_type=SSE_MEDIA_TYPE)
        return completion_body(served_name, await pending, engine.loaded.fingerprint)

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest, request: Request) -> dict | StreamingResponse:
        authorize(request)
        check_model(body.model)
        generations = await asyncio.to_thread(completion_requests, engine, body)
        pending = gather([engine.submit(generation) for generation in generations])
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            events = text_stream(served_name, engine.loaded.fingerprint, body.n, pending, usage)
            return StreamingResponse(events, media_type=SSE_MEDIA_TYPE)
        return text_completion_body(served_name, await pending, engine.loaded.fingerprint, body.n)

    return app


def generation_requests(engine: LocalEngine, body: ChatCompletionRequest) -> list[GenerationRequest]:
    """The body as ``n`` engine requests, validated before any is queued (so a bad one wastes no decoding)."""
    _refuse_unsupported(body)
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        if body.max_tokens != body.max_completion_tokens:
            raise RequestError("max_tokens and max_completion_tokens disagree; send one", param="max_tokens")
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    base = GenerationRequest(
        prompt_ids=engine.encode_chat(text_messages(body.messages)),
        max_tokens=engine.config.default_max_tokens if max_tokens is None else max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,  # OpenAI's default, as vLLM
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k,
        stop=stop,
        logprobs=(body.top_logprobs or 0) if body.logprobs else None,
        seed=body.seed,
    ).checked(engine.loaded.context_window)
    # n samples of one prompt: distinct seeds when seeded, so the choices differ yet stay reproducible.
    return [base if base.seed is None else _with_seed(base, base.seed + i) for i in range(body.n)]


def _with_seed(request: GenerationRequest, seed: int) -> GenerationRequest:
    from dataclasses import replace

    return replace(request, seed=seed)


def _refuse_unsupported(body: ChatCompletionRequest) -> None:
    if not body.messages:
        raise RequestError("messages is empty; send at least one message", param="messages")
    if body.tools:
        raise RequestError("this local model does not call tools; drop `tools`", param="tools")
    if body.response_format and body.response_format.get("type") == "json_schema":
        raise RequestError(
            "response_format json_schema cannot be enforced here; describe the JSON in the prompt instead",
            param="response_format",
        )
    if not 1 <= body.n <= 16:
        raise RequestError(f"n must be between 1 and 16, got {body.n}", param="n")
    if body.top_logprobs is not None and not body.logprobs:
        raise RequestError("top_logprobs requires logprobs=true", param="top_logprobs")


def completion_body(model: str, results: list[GenerationResult], fingerprint: str) -> dict:
    completion_tokens = sum(result.completion_tokens for result in results)
    prompt_tokens = results[0].prompt_tokens  # the n choices share one prompt
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason,
                "logprobs": _logprobs_body(result),
            }
            for index, result in enumerate(results)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _logprobs_body(result: GenerationResult) -> dict | None:
    if result.logprobs is None:
        return None

    def entry(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {
        "content": [
            {**entry(score.token, score.logprob), "top_logprobs": [entry(t, lp) for t, _, lp in score.top]}
            for score in result.logprobs
        ]
    }


def _install_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: str, code: str, param: str | None, kind: str = "invalid_request_error"):
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        return JSONResponse(status_code=status, content=body)

    @app.exception_handler(ApiError)
    async def api_error(_, exc: ApiError):
        return error(exc.status, exc.message, exc.code, exc.param)

    @app.exception_handler(RequestError)
    async def request_error(_, exc: RequestError):
        return error(400, str(exc), exc.code, exc.param)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in exc.errors())
        return error(400, f"invalid request body: {problems}", "invalid_request", None)

    @app.exception_handler(Exception)
    async def server_error(_, exc: Exception):
        logger.exception("request failed")
        return error(500, f"generation failed: {exc}", "server_error", None, kind="server_error")


class ServerThread:
    """uvicorn in a background thread, for tests and benchmarks: ``with ServerThread(app) as server: server.url``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0):
        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, name="clauseloop-serve-lm", daemon=True)
        self._host, self._timeout = host, startup_timeout
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self._host}:{self.port}; is the port taken?")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def serve(engine: LocalEngine, config: ServerConfig) -> None:
    """Serve until interrupted (the CLI's ``serve-lm``)."""
    import uvicorn

    uvicorn.run(create_app(engine, config), host=config.host, port=config.port, log_level="info")
