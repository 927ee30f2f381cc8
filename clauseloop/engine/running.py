"""A running batch: rows decode in lockstep, leave the KV cache when they finish, and new rows join between steps.

Layout: every row is right-aligned in one KV cache of width W (left padding, masked out), so all rows predict
from the last column and each keeps its own position ids. A joining group is prefilled on its own and then
concatenated along the batch axis, the narrower side padded on the left; columns that became padding for every
row are trimmed. Prompt prefixes are prefilled once: a prefix shared by a whole group (DSPy's system message
and demos for one signature) runs at batch size one and is repeated, and ``PrefixStore`` keeps the KV of recent
prefixes so the next request with the same system message skips it entirely.

Joining, trimming and the prefix store edit the cache tensors directly, which is only valid for plain
full-attention layers (``kvcache.GrowingLayer``, which appends in place); other models fall back to fixed batches.
"""

from __future__ import annotations

from clauseloop.engine.decoding import Row, choose_tokens, common_prefix_length, left_pad, score_tokens
from clauseloop.engine.kvcache import is_plain, new_cache
from clauseloop.engine.model import LoadedModel
from clauseloop.engine.requests import GenerationRequest, GenerationResult


class PrefixStore:
    """The KV caches of a few recent prompt prefixes (batch size one), least recently used dropped first."""

    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._entries: list[tuple[tuple[int, ...], list]] = []

    def match(self, tokens: tuple[int, ...]) -> tuple[int, list | None]:
        """(how many leading tokens of ``tokens`` a stored prefix covers, that prefix's per-layer (keys, values))."""
        best, best_index = 0, None
        for index, (stored, _) in enumerate(self._entries):
            length = common_prefix_length(stored, tokens)
            if length > best:
                best, best_index = length, index
        if best_index is None:
            return 0, None
        self._entries.insert(0, self._entries.pop(best_index))  # most recently used first
        return best, self._entries[0][1]

    def put(self, tokens: tuple[int, ...], kv: list) -> None:
        # An entry that is a prefix of the new one is superseded by it.
        self._entries = [(t, v) for t, v in self._entries if common_prefix_length(t, tokens) < len(t)]
        self._entries.insert(0, (tokens, kv))
        del self._entries[self.capacity :]


class RunningBatch:
    """The rows decoding now, their next-token logits, attention mask, positions and KV cache."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        prefixes: PrefixStore | None = None,
        min_shared_prefix: int = 16,
        max_padding: float = 0.1,
    ):
        self.loaded = loaded
        self.prefixes = prefixes
        self.min_shared_prefix = min_shared_prefix
        self.max_padding = max_padding
        self.rows: list[Row] = []  # aligned with the cache's batch axis
        self.logits = self.attention = self.positions = self.cache = None
        self.joinable = is_plain(new_cache(loaded.model.config))  # rows can join, leave and be trimmed

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def width(self) -> int:
        return 0 if self.attention is None else int(self.attention.shape[1])

    def add(self, rows: list[Row]) -> int:
        """Prefill ``rows`` and add them (their first token is chosen by the next step); returns tokens prefilled.

        Rows are prefilled in groups of similar prompt length: one left-padded group would compute the padding
        too (a review's prompts differ by up to 2×, ~20 % of its prefill), and prompts of a few hundred tokens fill
        the matrix units on their own. Groups merge into one batch; caches that cannot be merged take one group.
        """
        groups = length_groups(rows, self.max_padding) if self.joinable else [rows]
        return sum(self._add_group(group) for group in groups)

    def _add_group(self, rows: list[Row]) -> int:
        import torch

        with torch.inference_mode():
            logits, attention, positions, cache, prefilled = self._prefill([row.request.prompt_ids for row in rows])
        if not self.rows:
            self.logits, self.attention, self.positions, self.cache = logits, attention, positions, cache
        else:
            self._merge(logits, attention, positions, cache)
        self.rows.extend(rows)
        return prefilled

    def step(self) -> list[Row]:
        """Give every row its next token, drop the finished rows, run the model for the rest; returns the finished."""
        import torch

        with torch.inference_mode():
            tokens = choose_tokens(self.logits, self.rows)
            scores = score_tokens(self.logits, tokens, self.rows, self.loaded.tokenizer)
            for slot, row in enumerate(self.rows):
                row.add(int(tokens[slot]), scores[slot], self.loaded)
            finished = [row for row in self.rows if row.finish_reason]
            keep = [slot for slot, row in enumerate(self.rows) if row.finish_reason is None]
            if not keep:
                self.abandon()
                return finished
            if len(keep) < len(self.rows):
                tokens = self._select(keep, tokens)
            self.attention = torch.cat([self.attention, self.attention.new_ones((len(keep), 1))], dim=1)
            self.positions = self.positions + 1
            self.logits = _forward(self.loaded, tokens[:, None], self.attention, self.positions, self.cache)
        return finished

    def abandon(self) -> list[Row]:
        """Empty the batch (after an error, or when the last row finished); returns the rows it held."""
        rows, self.rows = self.rows, []
        self.logits = self.attention = self.positions = self.cache = None
        return rows

    def _select(self, keep: list[int], tokens):
        import torch

        index = torch.tensor(keep)
        self.cache.batch_select_indices(index)
        self.rows = [self.rows[slot] for slot in keep]
        self.logits, self.attention, self.positions = self.logits[index], self.attention[index], self.positions[index]
        if self.joinable:
            self._trim_padding()
        return tokens[index]

    def _trim_padding(self) -> None:
        """Drop leading columns that are padding for every remaining row (the longest prompt may have left)."""
        first = int(self.attention.any(dim=0).nonzero()[0])
        if first:
            self.attention = self.attention[:, first:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]

    def _merge(self, logits, attention, positions, cache) -> None:
        import torch

        width = max(self.width, int(attention.shape[1]))
        self.attention = torch.cat([_pad_columns(self.attention, width), _pad_columns(attention, width)])
        self.positions = torch.cat([self.positions, positions])
        self.logits = torch.cat([self.logits, logits])
        for mine, theirs in zip(self.cache.layers, cache.layers):
            mine.keys = torch.cat([_pad_columns(mine.keys, width), _pad_columns(theirs.keys, width)])
            mine.values = torch.cat([_pad_columns(mine.values, width), _pad_columns(theirs.values, width)])

    def _prefill(self, prompts: list[tuple[int, ...]]):
        """(last logits, attention mask, last positions, KV cache, tokens prefilled) for a group of prompts."""
        import torch

        cache = new_cache(self.loaded.model.config)
        shared = self._shared_length(prompts)
        prefilled = 0
        if shared:
            prefilled = self._prefill_prefix(tuple(prompts[0][:shared]), cache)
            cache.batch_repeat_interleave(len(prompts))
        input_ids, suffix_mask = left_pad([p[shared:] for p in prompts], self.loaded.tokenizer.pad_token_id or 0)
        attention = torch.cat([suffix_mask.new_ones((len(prompts), shared)), suffix_mask], dim=1)
        # Positions count real tokens only, so padding (even between a prefix and a suffix) shifts nothing.
        positions = (attention.cumsum(dim=1) - 1).clamp(min=0)[:, shared:]
        logits = _forward(self.loaded, input_ids, attention, positions, cache)
        return logits, attention, positions[:, -1:], cache, prefilled + int(suffix_mask.sum())

    def _shared_length(self, prompts: list[tuple[int, ...]]) -> int:
        if len(prompts) == 1 and self.prefixes is None:
            return 0
        # Each row keeps at least its last token out of the shared part: it needs a position to predict from.
        length = min(common_prefix_length(*prompts), min(len(p) for p in prompts) - 1)
        return length if length >= self.min_shared_prefix else 0

    def _prefill_prefix(self, tokens: tuple[int, ...], cache) -> int:
        """Fill ``cache`` (batch size one) with ``tokens``, reusing a stored prefix; returns tokens computed."""
        import torch

        matched, stored = self.prefixes.match(tokens) if self.prefixes else (0, None)
        if matched >= self.min_shared_prefix:
            for index, (keys, values) in enumerate(stored):
                cache.update(keys[..., :matched, :], values[..., :matched, :], index)
        else:
            matched = 0
        rest = tokens[matched:]
        if rest:
            attention = torch.ones((1, len(tokens)), dtype=torch.long)
            _forward(self.loaded, torch.tensor([rest]), attention, torch.arange(matched, len(tokens))[None], cache)
        if self.prefixes is not None and is_plain(cache):
            self.prefixes.put(tokens, [(layer.keys, layer.values) for layer in cache.layers])
        return len(rest)


def generate_batch(
    loaded: LoadedModel,
    requests: list[GenerationRequest],
    *,
    prefixes: PrefixStore | None = None,
    min_shared_prefix: int = 16,
) -> tuple[list[GenerationResult], int]:
    """Decode ``requests`` as one batch in this thread: (results in order, prompt tokens prefilled).

    The engine's worker does the same while admitting newcomers; this is the direct path for offline use and tests.
    """
    batch = RunningBatch(loaded, prefixes=prefixes, min_shared_prefix=min_shared_prefix)
    rows = [Row(request) for request in requests]
    prefilled = batch.add(rows)
    while batch.size:
        batch.step()
    return [row.result(loaded.tokenizer) for row in rows], prefilled


def length_groups(rows: list[Row], max_padding: float) -> list[list[Row]]:
    """``rows`` in groups of similar prompt length, longest first: a group's left padding stays within
    ``max_padding`` of its real tokens."""
    ordered = sorted(rows, key=lambda row: len(row.request.prompt_ids), reverse=True)
    groups: list[list[Row]] = []
    for row in ordered:
        length = len(row.request.prompt_ids)
        if groups:
            group = groups[-1]
            longest = len(group[0].request.prompt_ids)
            real = sum(len(r.request.prompt_ids) for r in group) + length
            if longest * (len(group) + 1) - real <= max_padding * real:
                group.append(row)
                continue
        groups.append([row])
    return groups


def _forward(loaded: LoadedModel, input_ids, attention, positions, cache):
    extra = {"logits_to_keep": 1} if loaded.keeps_last_logits else {}
    output = loaded.model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        **extra,
    )
    return output.logits[:, -1, :].float()


def _pad_columns(tensor, width: int):
    """Left-pad the sequence axis (last for masks, second to last for keys/values) with zeros up to ``width``."""
    import torch.nn.functional as F

    missing = width - tensor.shape[-1 if tensor.dim() == 2 else -2]
    if not missing:
        return tensor
    return F.pad(tensor, (missing, 0) if tensor.dim() == 2 else (0, 0, missing, 0))
