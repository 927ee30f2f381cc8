"""A KV cache that appends in place: decoding on CPU is memory-bound, and re-copying the cache costs a fifth of a step.

transformers' ``DynamicLayer`` grows by ``torch.cat`` on every decoding step, which reads and writes the whole
cache of every layer once per token. With 16 rows and 400 cached positions that is ~600 MB of copying per step
for SmolLM2-135M, about as much memory traffic as attention itself (measured: 51 ms of a ~300 ms step on one
core). ``GrowingLayer`` keeps a buffer with spare columns and exposes ``keys``/``values`` as views of its filled
part, so a step writes one column.

The running batch (``running.py``) still edits ``layer.keys``/``layer.values`` directly when rows join, leave or
are trimmed; such an edit replaces the view with a new tensor, and the next ``update`` adopts that tensor into a
fresh buffer (one copy, as ``torch.cat`` would have made). Views handed out earlier (the prefix store keeps some)
stay valid because a buffer is only ever written beyond its filled part.
"""

from __future__ import annotations

from transformers.cache_utils import DynamicCache, DynamicLayer

SPARE_COLUMNS = 64  # columns allocated ahead: one reallocation per 64 decoding steps


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose update writes into spare capacity instead of concatenating."""

    _key_buffer = None
    _value_buffer = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        filled = self.get_seq_length()
        added = key_states.shape[-2]
        if not self._owns_views() or filled + added > self._key_buffer.shape[-2]:
            self._adopt(filled, key_states, added)
        self._key_buffer[..., filled : filled + added, :] = key_states
        self._value_buffer[..., filled : filled + added, :] = value_states
        self.keys = self._key_buffer[..., : filled + added, :]
        self.values = self._value_buffer[..., : filled + added, :]
        return self.keys, self.values

    def _owns_views(self) -> bool:
        """Whether ``keys``/``values`` are still the views of this layer's buffers (nobody replaced them)."""
        buffer = self._key_buffer
        return (
            buffer is not None
            and self.keys.dim() == 4
            and self.keys.data_ptr() == buffer.data_ptr()
            and self.keys.stride() == buffer.stride()
            and self.values.data_ptr() == self._value_buffer.data_ptr()
            and self.keys.shape[:2] == buffer.shape[:2]
        )

    def _adopt(self, filled: int, like, added: int) -> None:
        """New buffers with room for ``added`` more columns and spare, holding the current keys and values."""
        batch, heads, _, dim = like.shape
        shape = (batch, heads, filled + added + SPARE_COLUMNS, dim)
        key_buffer, value_buffer = like.new_empty(shape), like.new_empty(shape)
        if filled:
            key_buffer[..., :filled, :] = self.keys
            value_buffer[..., :filled, :] = self.values
        self._key_buffer, self._value_buffer = key_buffer, value_buffer

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        super().reset()


def new_cache(config) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose plain full-attention layers append in place."""
    cache = DynamicCache(config=config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def is_plain(cache) -> bool:
    """Only full-attention layers without extra state can be edited by the running batch (join, trim, select)."""
    return bool(cache.layers) and all(type(layer) in (DynamicLayer, GrowingLayer) for layer in cache.layers)
