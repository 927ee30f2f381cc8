"""``LocalLM``: a local transformers model as a DSPy LM, batched across threads.

DSPy 3.4 runs custom models as engines: ``dspy.LM(model, engine=...)`` where the engine turns one canonical
``dspy.lm15.Request`` into one ``Response``; ``dspy.LM`` keeps everything else — the response cache
(``dspy.cache``, keyed on the request, ``rollout_id`` and ``cache=False`` included), retries, history, usage
tracking, callbacks, ``copy()`` and ``n`` (one engine call per candidate). ``LocalLM`` is that ``dspy.LM`` with
an engine bridge in front of the shared ``LocalEngine``, so from the caller's side it behaves like any
``dspy.LM``::

    lm = LocalLM("smollm2-135m-instruct", max_tokens=64)          # or a directory, adapter="runs/x/adapter"
    dspy.configure(lm=lm)
    outputs = lm("hello", logprobs=True)                           # [{"text": ..., "logprobs": {"content": [...]}}]

The model loads on the first call, once per process for every LocalLM over the same (model, adapter).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import dspy
from dspy.clients.engines.base import validate_request
from dspy.lm15 import (
    ContextLengthError,
    InvalidRequestError,
    Message,
    Request,
    Response,
    TextPart,
    TokenLogprob,
    TopLogprob,
    Usage,
    response_to_events,
)

from clauseloop.engine.batcher import LocalEngine, get_engine
from clauseloop.engine.config import EngineConfig
from clauseloop.engine.requests import GenerationRequest, GenerationResult, RequestError
from clauseloop.models import SMOLLM2, split_adapter

logger = logging.getLogger(__name__)


class _Bridge:
    """DSPy's engine protocol over a ``LocalEngine``: the heavy engine is looked up lazily and shared."""

    # Capability hints DSPy's adapters read (see dspy.clients.capabilities): plain text generation only,
    # so JSONAdapter does not ask for a response_format we could not enforce.
    supports_function_calling = False
    supports_reasoning = False
    supports_response_schema = False
    supported_params = frozenset(
        {"temperature", "max_tokens", "top_p", "top_k", "stop", "logprobs", "top_logprobs", "seed"}
    )

    def __init__(self, model: str, adapter: str | None, config: EngineConfig):
        self.model, self.adapter, self.engine_config = model, adapter, config

    @property
    def engine(self) -> LocalEngine:
        return get_engine(self.model, self.adapter, self.engine_config)

    def generation_request(self, request: Request) -> GenerationRequest:
        validate_request(request)
        config = request.config
        if request.tools:
            raise InvalidRequestError("LocalLM does not call tools; use a ChatAdapter/JSONAdapter signature instead")
        if config.frequency_penalty or config.presence_penalty:
            raise InvalidRequestError("LocalLM has no frequency/presence penalties; drop them from the LM kwargs")
        try:
            prompt_ids = self.engine.encode_chat(_chat_messages(request))
        except RequestError as error:
            raise InvalidRequestError(str(error), status=400) from error
        return GenerationRequest(
            prompt_ids=prompt_ids,
            max_tokens=config.max_tokens or self.engine_config.default_max_tokens,
            temperature=config.temperature or 0.0,
            top_p=1.0 if config.top_p is None else config.top_p,
            top_k=config.top_k,
            stop=config.stop,
            logprobs=config.logprobs,
            seed=config.seed,
        )

    def submit(self, request: Request):
        generation = self.generation_request(request)
        try:
            return self.engine.submit(generation)
        except RequestError as error:
            error_class = ContextLengthError if error.code == "context_length_exceeded" else InvalidRequestError
            raise error_class(str(error), status=400) from error

    def __deepcopy__(self, memo) -> _Bridge:
        return self  # copies of an LM share the engine, like dspy.LM copies share their HTTP clients


class LocalEngineBridge(_Bridge):
    """The synchronous DSPy engine: blocks the calling thread while the batch worker decodes."""

    def complete(self, request: Request) -> Response:
        return _response(self.submit(request).result(), request.model)

    def stream(self, request: Request):
        return response_to_events(self.complete(request))  # one chunk: tokens are not streamed as they decode

    def close(self) -> None:
        """Nothing to release per LM: the shared engine outlives it (``LocalLM.close`` stops its worker)."""


class AsyncLocalEngineBridge(_Bridge):
    """The asynchronous DSPy engine (``lm.acall``, ``module.acall``): awaits the batch worker's future."""

    async def complete(self, request: Request) -> Response:
        future = await asyncio.to_thread(self.submit, request)  # tokenizing can take milliseconds: off the loop
        return _response(await asyncio.wrap_future(future), request.model)

    async def stream(self, request: Request):
        for event in response_to_events(await self.complete(request)):
            yield event

    async def aclose(self) -> None:
        """Nothing to release per LM (see ``LocalEngineBridge.close``)."""


class LocalLM(dspy.LM):
    """A local causal LM (model-store name or directory, optional PEFT adapter) behind DSPy's LM interface.

    Fine-tunable through DSPy: the default ``provider`` is :class:`clauseloop.finetune.provider.LocalFinetuneProvider`,
    so ``dspy.BootstrapFinetune`` trains a LoRA adapter and hands back ``copy(model="BASE+ADAPTER_DIR")``.
    """

    def __init__(
        self,
        model: str = SMOLLM2,
        *,
        adapter: str | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = 256,
        cache: bool = True,
        num_retries: int = 0,
        engine_config: EngineConfig | None = None,
        **kwargs: Any,
    ):
        base, inline_adapter = split_adapter(model)
        self.base_model = base
        self.adapter = adapter or inline_adapter
        self.engine_config = engine_config or EngineConfig()
        bridge = LocalEngineBridge(base, self.adapter, self.engine_config)
        if kwargs.get("provider") is None:
            # imported here: the provider lives in the finetune layer, above the engine
            from clauseloop.finetune.provider import LocalFinetuneProvider

            kwargs["provider"] = LocalFinetuneProvider()
        super().__init__(
            model=base if not self.adapter else f"{base}+{self.adapter}",
            engine=bridge,
            async_engine=AsyncLocalEngineBridge(base, self.adapter, self.engine_config),
            temperature=temperature,
            max_tokens=max_tokens,
            cache=cache,
            num_retries=num_retries,  # local errors are not transient: retrying would only repeat them
            **kwargs,
        )

    @property
    def local_engine(self) -> LocalEngine:
        """The shared engine (loads the model on first access)."""
        return self._engine_spec.engine

    def __call__(self, prompt=None, *, messages=None, **kwargs):
        return super().__call__(prompt, messages=messages, **self._weights_tag(kwargs))

    async def acall(self, prompt=None, *, messages=None, **kwargs):
        return await super().acall(prompt, messages=messages, **self._weights_tag(kwargs))

    # Not `forward`: DSPy runs an LM whose forward is overridden through its deprecated legacy path.
    def _weights_tag(self, kwargs: dict) -> dict:
        """Put the weights' fingerprint in the request, so DSPy's cache never serves an adapter retrained in place.

        ``metadata`` is OpenAI's free-form request field: it reaches the cache key and the engine ignores it.
        """
        metadata = {**(kwargs.get("metadata") or self.kwargs.get("metadata") or {})}
        metadata["clauseloop_weights"] = self.local_engine.loaded.fingerprint
        return {**kwargs, "metadata": metadata}

    def copy(self, **kwargs: Any) -> LocalLM:
        """A copy with updated settings; ``model``, ``adapter`` or ``engine_config`` give a new ``LocalLM`` over other
        weights with the same settings (how DSPy's fine-tuning hands back the tuned model).

        ``model="BASE"`` drops the adapter, ``model="BASE+ADAPTER_DIR"`` or ``adapter=DIR`` sets one and
        ``adapter=None`` drops it. Everything else carries over (temperature, max_tokens, cache, retries, callbacks,
        provider, launch/train kwargs, other request kwargs) except ``finetuning_model``, which named the old weights.
        """
        refused = sorted({"base_model", "engine", "async_engine"} & set(kwargs))
        if refused:
            raise ValueError(
                f"LocalLM.copy cannot change {refused}: the engine follows the weights, so pass model='BASE' or "
                "model='BASE+ADAPTER_DIR' (or adapter=DIR) instead"
            )
        weights = {key: kwargs.pop(key) for key in ("model", "adapter", "engine_config") if key in kwargs}
        if not weights:
            return super().copy(**kwargs)
        rebuilt = self._over_weights(**weights)
        return rebuilt.copy(**kwargs) if kwargs else rebuilt

    def _over_weights(self, model: str | None = None, engine_config: EngineConfig | None = None,
                      **adapter: str | None) -> LocalLM:
        """A new LocalLM like this one over ``model`` and/or ``adapter`` (keyword, so None can mean "no adapter")."""
        if model is None:
            base, current = self.base_model, self.adapter
        else:
            base, current = split_adapter(model)
            if adapter.get("adapter") and current and adapter["adapter"] != current:
                raise ValueError(f"copy got two adapters, {current!r} in model and {adapter['adapter']!r}; pass one")
        return type(self)(
            base, adapter=adapter.get("adapter", current), engine_config=engine_config or self.engine_config,
            cache=self.cache, num_retries=self.num_retries, model_type=self.model_type,
            callbacks=list(self.callbacks), provider=self.provider, launch_kwargs=dict(self.launch_kwargs),
            train_kwargs=dict(self.train_kwargs), use_developer_role=self.use_developer_role, **self.kwargs,
        )

    def close(self) -> None:
        """Stop the shared engine's batching worker (it restarts on the next call); the model stays loaded."""
        bridge = self._engine_spec
        engine = get_engine(bridge.model, bridge.adapter, bridge.engine_config, load=False)
        if engine is not None:
            engine.close()
        super().close()

    def __enter__(self) -> LocalLM:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def dump_state(self) -> dict[str, Any]:
        state = dspy.BaseLM.dump_state(self)
        state.update(model=self.base_model, adapter=self.adapter)
        return state

    @classmethod
    def load_state(cls, state: dict[str, Any], *, allow_custom_lm_class: bool = False) -> LocalLM:
        state = {key: value for key, value in state.items() if key != "_dspy_lm_class"}
        return cls(**state)


def _chat_messages(request: Request) -> list[dict[str, str]]:
    messages = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else "".join(_texts(request.system))
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        if message.role == "tool":
            raise RequestError("LocalLM does not call tools, so it cannot take tool results", param="messages")
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": "".join(_texts(message.parts))})
    return messages


def _texts(parts) -> list[str]:
    for part in parts:
        if not isinstance(part, TextPart):
            raise RequestError(
                f"LocalLM takes text only, got a {type(part).__name__}; describe the content in text", param="messages"
            )
    return [part.text for part in parts]


def _response(result: GenerationResult, model: str) -> Response:
    logprobs = None
    if result.logprobs is not None:
        logprobs = tuple(
            TokenLogprob(
                token=score.token,
                logprob=score.logprob,
                bytes=tuple(score.token.encode("utf-8")),
                token_id=score.token_id,
                top=tuple(TopLogprob(token=t, logprob=lp, token_id=i) for t, i, lp in score.top),
            )
            for score in result.logprobs
        )
    return Response(
        id=f"local-{uuid.uuid4().hex[:16]}",
        model=model,
        message=Message.assistant([TextPart(result.text)]),
        finish_reason=result.finish_reason,
        usage=Usage(input_tokens=result.prompt_tokens, output_tokens=result.completion_tokens),
        logprobs=logprobs,
        logprobs_complete=result.logprobs_complete,
    )
