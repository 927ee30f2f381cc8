"""What the engine is asked to generate, what it returns, and the error for requests it cannot serve.

These are plain dataclasses on token ids, independent of DSPy and HTTP: the DSPy bridge (``lm.py``) and the
OpenAI-compatible server (``server.py``) both translate their own request shapes into them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


class RequestError(ValueError):
    """A request the engine cannot serve as asked. ``code`` follows OpenAI's error codes; the message says the fix."""

    def __init__(self, message: str, *, code: str = "invalid_request", param: str | None = None):
        super().__init__(message)
        self.code = code
        self.param = param


@dataclass(frozen=True)
class GenerationRequest:
    """One completion to generate from an already-tokenized prompt."""

    prompt_ids: tuple[int, ...]
    max_tokens: int
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: no log-probs; 0: the chosen token's; k > 0: also the top-k alternatives
    seed: int | None = None

    def checked(self, context_window: int) -> GenerationRequest:
        """This request validated against the model, with ``max_tokens`` clamped to the room left in the window."""
        if not self.prompt_ids:
            raise RequestError("the prompt is empty; send at least one message with text", param="messages")
        if self.max_tokens < 1:
            raise RequestError(f"max_tokens must be >= 1, got {self.max_tokens}", param="max_tokens")
        if len(self.prompt_ids) >= context_window:
            raise RequestError(
                f"the prompt has {len(self.prompt_ids)} tokens but the model's context window is {context_window}; "
                "shorten the prompt (fewer or smaller retrieved passages, fewer demos)",
                code="context_length_exceeded",
                param="messages",
            )
        if not 0 <= self.temperature <= 2:
            raise RequestError(f"temperature must be in [0, 2], got {self.temperature}", param="temperature")
        if not 0 < self.top_p <= 1:
            raise RequestError(f"top_p must be in (0, 1], got {self.top_p}", param="top_p")
        if self.top_k is not None and self.top_k < 1:
            raise RequestError(f"top_k must be >= 1, got {self.top_k}", param="top_k")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise RequestError(f"top_logprobs must be in [0, 20], got {self.logprobs}", param="top_logprobs")
        if any(not stop for stop in self.stop):
            raise RequestError("stop strings must be non-empty", param="stop")
        room = context_window - len(self.prompt_ids)
        return replace(self, max_tokens=min(self.max_tokens, room))


@dataclass(frozen=True)
class TokenScore:
    """One generated token and its log-probability under the model (before temperature or top-p)."""

    token: str
    token_id: int
    logprob: float
    top: tuple[tuple[str, int, float], ...] = ()  # (token, token_id, logprob), most likely first


@dataclass(frozen=True)
class GenerationResult:
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string) or "length" (max_tokens)
    prompt_tokens: int
    completion_tokens: int
    logprobs: tuple[TokenScore, ...] | None = None
    # False when a stop string cut a token in half: the scores then cover whole tokens of the text only.
    logprobs_complete: bool = True


@dataclass
class EngineStats:
    """Counters for benchmarks and logs: how well concurrent requests were batched."""

    requests: int = 0
    batches: int = 0  # running batches started from an idle engine (requests that join one do not start another)
    steps: int = 0  # decoding steps (one model call each for every row in the batch)
    row_steps: int = 0  # rows decoded, summed over steps: row_steps / steps is the mean batch size
    max_batch_size: int = 0
    prompt_tokens: int = 0
    prefilled_tokens: int = 0  # prompt tokens actually run through the model (shared prefixes count once)
    completion_tokens: int = 0

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "batches": self.batches,
            "steps": self.steps,
            "mean_batch_size": round(self.row_steps / self.steps, 2) if self.steps else 0.0,
            "max_batch_size": self.max_batch_size,
            "prompt_tokens": self.prompt_tokens,
            "prefilled_tokens": self.prefilled_tokens,
            "completion_tokens": self.completion_tokens,
        }
