"""GrowingLayer: same attention results as transformers' DynamicLayer, without re-copying the cache each step."""

from __future__ import annotations

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from clauseloop.engine.kvcache import SPARE_COLUMNS, GrowingLayer, is_plain, new_cache


def tiny_model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


def decode(model, cache, steps: int, select_after: int | None = None):
    ids = torch.randint(0, 64, (3, 7), generator=torch.Generator().manual_seed(1))
    logits = []
    with torch.inference_mode():
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
        for step in range(steps):
            token = out.logits[:, -1].argmax(-1)[:, None]
            if step == select_after:
                cache.batch_select_indices(torch.tensor([0, 2]))
                token = token[[0, 2]]
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            logits.append(out.logits[:, -1].clone())
    return logits


def test_growing_cache_matches_dynamic_cache_across_steps_and_row_removal():
    model = tiny_model()
    expected = decode(model, DynamicCache(config=model.config), steps=SPARE_COLUMNS + 6, select_after=3)
    cache = new_cache(model.config)
    got = decode(model, cache, steps=SPARE_COLUMNS + 6, select_after=3)  # crosses a reallocation too
    assert all(isinstance(layer, GrowingLayer) for layer in cache.layers) and is_plain(cache)
    for want, have in zip(expected, got, strict=True):
        torch.testing.assert_close(have, want)
    assert cache.layers[0].keys.shape == (2, 2, 7 + SPARE_COLUMNS + 6, 8)


def one_more_step(model, cache) -> None:
    with torch.inference_mode():
        model(input_ids=torch.zeros((3, 1), dtype=torch.long), past_key_values=cache, use_cache=True)


def decoded(steps: int):
    """A tiny model, its growing cache after ``steps`` decoding steps, and the cache's first layer."""
    model = tiny_model()
    cache = new_cache(model.config)
    decode(model, cache, steps=steps)
    return model, cache, cache.layers[0]


def test_a_decoding_step_writes_in_place():
    model, cache, layer = decoded(steps=2)
    before = layer.keys.data_ptr()
    one_more_step(model, cache)
    assert layer.keys.data_ptr() == before  # a view of the same buffer, one column longer
    assert layer.keys.shape[-2] == 7 + 3


def test_replaced_tensors_are_adopted_and_earlier_views_stay_valid():
    model, cache, layer = decoded(steps=1)
    kept = layer.keys.clone()
    stored_view = layer.keys  # what the prefix store keeps
    layer.keys, layer.values = layer.keys[..., 2:, :], layer.values[..., 2:, :]  # what trimming does
    one_more_step(model, cache)
    assert layer.keys.shape[-2] == kept.shape[-2] - 2 + 1
    torch.testing.assert_close(layer.keys[..., :-1, :], kept[..., 2:, :])
    torch.testing.assert_close(stored_view, kept)


def test_rows_are_prefilled_in_groups_of_similar_length():
    from clauseloop.engine.decoding import Row
    from clauseloop.engine.requests import GenerationRequest
    from clauseloop.engine.running import length_groups

    rows = [Row(GenerationRequest(prompt_ids=tuple(range(n)), max_tokens=4)) for n in (100, 400, 95, 390, 200, 98)]
    groups = length_groups(rows, max_padding=0.1)
    assert [[len(r.request.prompt_ids) for r in g] for g in groups] == [[400, 390], [200], [100, 98, 95]]
    assert length_groups(rows, max_padding=10.0) == [sorted(rows, key=lambda r: -len(r.request.prompt_ids))]
