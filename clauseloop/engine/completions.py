"""The parts of the OpenAI API that ``server.py`` adds to chat: legacy ``/v1/completions`` and ``stream=true``.

The engine decodes whole results, so a stream sends the role first (right away, so clients see the response
start), then each choice's completion as one content chunk, a last chunk with the finish reason (and usage when
``stream_options.include_usage`` is set), and ``data: [DONE]`` — the chunk shapes OpenAI's own API sends.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from concurrent.futures import Future
from typing import Any, AsyncIterator, Awaitable, Callable

from pydantic import BaseModel, ConfigDict

from clauseloop.engine.requests import GenerationRequest, GenerationResult, RequestError

SSE_MEDIA_TYPE = "text/event-stream"


class CompletionRequest(BaseModel):
    """``/v1/completions``: a raw text prompt (no chat template). Other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    prompt: str | list[str]
    max_tokens: int | None = 16  # OpenAI's default for this endpoint
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    stop: str | list[str] | None = None
    logprobs: int | None = None
    seed: int | None = None
    stream: bool | None = None
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None
    stream_options: dict[str, Any] | None = None


def completion_requests(engine: Any, body: CompletionRequest) -> list[GenerationRequest]:
    """One engine request per (prompt, sample), prompt-major as OpenAI numbers the choices; validated first."""
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if not prompts or any(not isinstance(p, str) or not p for p in prompts):
        raise RequestError("prompt is empty; send a non-empty string (or a list of them)", param="prompt")
    if body.echo:
        raise RequestError("echo is not supported; prepend the prompt to the text yourself", param="echo")
    if body.suffix:
        raise RequestError("suffix (insertion) is not supported by this model; drop it", param="suffix")
    if body.best_of not in (None, 1, body.n):
        raise RequestError("best_of is not supported; use n and pick yourself", param="best_of")
    if not 1 <= body.n <= 16 or len(prompts) * body.n > 64:
        raise RequestError(f"n must be between 1 and 16 and prompts × n at most 64, got n={body.n}", param="n")
    tokenizer = engine.loaded.tokenizer
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    requests = []
    for prompt in prompts:
        base = GenerationRequest(
            prompt_ids=tuple(tokenizer(prompt, add_special_tokens=True)["input_ids"]),
            max_tokens=engine.config.default_max_tokens if body.max_tokens is None else body.max_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            stop=stop,
            logprobs=body.logprobs,
            seed=body.seed,
        ).checked(engine.loaded.context_window)
        requests += [base if base.seed is None else _seeded(base, base.seed + i) for i in range(body.n)]
    return requests


def _seeded(request: GenerationRequest, seed: int) -> GenerationRequest:
    from dataclasses import replace

    return replace(request, seed=seed)


def text_completion_body(model: str, results: list[GenerationResult], fingerprint: str, n: int) -> dict:
    prompt_tokens = sum(result.prompt_tokens for result in results[::n])
    completion_tokens = sum(result.completion_tokens for result in results)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [
            {"index": index, "text": result.text, "finish_reason": result.finish_reason,
             "logprobs": legacy_logprobs(result)}
            for index, result in enumerate(results)
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def legacy_logprobs(result: GenerationResult) -> dict | None:
    """The ``/v1/completions`` log-prob shape: parallel lists of tokens, their log-probs, top alternatives, offsets."""
    if result.logprobs is None:
        return None
    offsets, position = [], 0
    for score in result.logprobs:
        offsets.append(position)
        position += len(score.token)
    return {
        "tokens": [score.token for score in result.logprobs],
        "token_logprobs": [score.logprob for score in result.logprobs],
        "top_logprobs": [{token: lp for token, _, lp in score.top} for score in result.logprobs],
        "text_offset": offsets,
    }


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


async def chat_stream(
    model: str, fingerprint: str, n: int, pending: Awaitable[list[GenerationResult]],
    logprobs_body: Callable[[GenerationResult], dict | None], include_usage: bool,
) -> AsyncIterator[str]:
    """OpenAI ``chat.completion.chunk`` events for ``n`` choices whose results ``pending`` resolves to."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "system_fingerprint": fingerprint}

    def chunk(choices: list[dict], **extra: Any) -> str:
        return sse({**head, "choices": choices, **extra})

    yield chunk([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                 for i in range(n)])
    results = await pending
    for index, result in enumerate(results):
        yield chunk([{"index": index, "delta": {"content": result.text}, "logprobs": logprobs_body(result),
                      "finish_reason": None}])
        yield chunk([{"index": index, "delta": {}, "logprobs": None, "finish_reason": result.finish_reason}])
    if include_usage:
        prompt = results[0].prompt_tokens
        completion = sum(result.completion_tokens for result in results)
        yield chunk([], usage={"prompt_tokens": prompt, "completion_tokens": completion,
                               "total_tokens": prompt + completion})
    yield sse("[DONE]")


async def text_stream(model: str, fingerprint: str, n: int, pending: Awaitable[list[GenerationResult]],
                      include_usage: bool) -> AsyncIterator[str]:
    """``text_completion`` events: one per choice with its whole text and finish reason, then ``[DONE]``."""
    results = await pending
    body = text_completion_body(model, results, fingerprint, n)
    for choice in body["choices"]:
        yield sse({**{k: v for k, v in body.items() if k not in ("choices", "usage")}, "choices": [choice]})
    if include_usage:
        yield sse({**{k: v for k, v in body.items() if k != "choices"}, "choices": []})
    yield sse("[DONE]")


async def gather(futures: list[Future]) -> list[GenerationResult]:
    return list(await asyncio.gather(*(asyncio.wrap_future(future) for future in futures)))
