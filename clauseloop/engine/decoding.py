"""Per-request decoding state and token choice: the parts of generation that do not depend on batching.

A hand-written loop instead of ``model.generate`` lets every row of a batch keep its own max_tokens,
temperature, top-k/top-p, stop strings, seed and log-prob request (``running.py`` drives the loop).
Log-probabilities are under the model's own distribution (before temperature and top-p), as vLLM reports them.
"""

from __future__ import annotations

import math
from typing import Any

from clauseloop.engine.model import LoadedModel
from clauseloop.engine.requests import GenerationRequest, GenerationResult, TokenScore


class Row:
    """The state of one request while it decodes. ``owner`` is the scheduler's handle (its future)."""

    def __init__(self, request: GenerationRequest, owner: Any = None):
        import torch

        self.request = request
        self.owner = owner
        self.token_ids: list[int] = []
        self.scores: list[TokenScore] = []
        self.finish_reason: str | None = None
        self.stop_at: int | None = None  # character offset where a stop string begins
        self.generator = torch.Generator().manual_seed(request.seed) if request.seed is not None else None
        self._checked_chars = 0

    def add(self, token_id: int, score: TokenScore | None, loaded: LoadedModel) -> None:
        if token_id in loaded.eos_token_ids:
            self.finish_reason = "stop"
            return
        self.token_ids.append(token_id)
        if score is not None:
            self.scores.append(score)
        if self.request.stop and self._find_stop(loaded.tokenizer):
            self.finish_reason = "stop"
        elif len(self.token_ids) >= self.request.max_tokens:
            self.finish_reason = "length"

    def _find_stop(self, tokenizer) -> bool:
        text = tokenizer.decode(self.token_ids, skip_special_tokens=True)
        # Only text near the end can hold a new match: a stop string may straddle the last few tokens.
        start = max(0, self._checked_chars - max(len(stop) for stop in self.request.stop))
        hits = [index for stop in self.request.stop if (index := text.find(stop, start)) >= 0]
        self._checked_chars = len(text)
        if hits:
            self.stop_at = min(hits)
        return bool(hits)

    def result(self, tokenizer) -> GenerationResult:
        text = tokenizer.decode(self.token_ids, skip_special_tokens=True)
        scores, complete = self.scores, True
        if self.stop_at is not None:
            text = text[: self.stop_at]
            kept = _tokens_within(tokenizer, self.token_ids, len(text))
            complete = len(tokenizer.decode(self.token_ids[:kept], skip_special_tokens=True)) == len(text)
            scores = scores[:kept]
        ended_by_eos = self.finish_reason == "stop" and self.stop_at is None
        return GenerationResult(
            text=text,
            finish_reason=self.finish_reason or "length",
            prompt_tokens=len(self.request.prompt_ids),
            completion_tokens=len(self.token_ids) + int(ended_by_eos),
            logprobs=tuple(scores) if self.request.logprobs is not None else None,
            logprobs_complete=complete,
        )


def _tokens_within(tokenizer, token_ids: list[int], length: int) -> int:
    """How many leading tokens decode to at most ``length`` characters (the stop string sits at the end)."""
    kept = len(token_ids)
    while kept and len(tokenizer.decode(token_ids[:kept], skip_special_tokens=True)) > length:
        kept -= 1
    return kept


def choose_tokens(logits, rows: list[Row]):
    """Greedy for temperature 0, otherwise a sample with the row's temperature, top-k, top-p and seed."""
    import torch

    chosen = logits.argmax(dim=-1)
    for slot, row in enumerate(rows):
        if row.request.temperature > 0:
            probs = _sampling_distribution(logits[slot], row.request)
            chosen[slot] = torch.multinomial(probs, 1, generator=row.generator)[0]
    return chosen


def _sampling_distribution(logits, request: GenerationRequest):
    import torch

    scaled = logits / request.temperature
    if request.top_k is not None and request.top_k < scaled.numel():
        threshold = torch.topk(scaled, request.top_k).values[-1]
        scaled = scaled.masked_fill(scaled < threshold, -math.inf)
    if request.top_p < 1.0:
        ordered, order = torch.sort(scaled, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        # Drop a token once the tokens before it already cover top_p (the most likely token always stays).
        drop = (probs.cumsum(dim=-1) - probs) >= request.top_p
        scaled = scaled.scatter(0, order[drop], -math.inf)
    return torch.softmax(scaled, dim=-1)


def score_tokens(logits, tokens, rows: list[Row], tokenizer) -> list[TokenScore | None]:
    """Log-probabilities of the chosen tokens (and top alternatives) for the rows that asked for them."""
    import torch

    wanted = [row.request.logprobs for row in rows]
    if all(k is None for k in wanted):
        return [None] * len(rows)
    logprobs = torch.log_softmax(logits, dim=-1)
    scores: list[TokenScore | None] = []
    for slot, top_k in enumerate(wanted):
        if top_k is None:
            scores.append(None)
            continue
        token_id = int(tokens[slot])
        top = ()
        if top_k:
            values, ids = torch.topk(logprobs[slot], top_k)
            top = tuple((tokenizer.decode([int(i)]), int(i), float(v)) for v, i in zip(values, ids))
        scores.append(TokenScore(tokenizer.decode([token_id]), token_id, float(logprobs[slot, token_id]), top))
    return scores


def left_pad(sequences: list[tuple[int, ...]], pad_id: int):
    """(ids, mask) with every sequence right-aligned, so all rows predict from the last column."""
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            ids[row, width - len(sequence) :] = torch.tensor(sequence)
            mask[row, width - len(sequence) :] = 1
    return ids, mask


def common_prefix_length(first: tuple[int, ...], *others: tuple[int, ...]) -> int:
    length = min([len(first), *(len(o) for o in others)])
    for other in others:
        length = next((i for i in range(length) if other[i] != first[i]), length)
    return length
