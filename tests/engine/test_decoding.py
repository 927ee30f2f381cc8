"""The batch decoding loop against the real SmolLM2: same answers as one-at-a-time, per-row settings honoured."""

from __future__ import annotations

import math

import pytest

from clauseloop.engine.decoding import common_prefix_length
from clauseloop.engine.running import PrefixStore, generate_batch
from clauseloop.engine.requests import GenerationRequest

pytestmark = pytest.mark.real_model

SYSTEM = "You are a careful contract analyst. Answer in one short sentence, plainly, without lists or headings."
QUESTIONS = ["What is an indemnity clause?", "Who is the licensor?", "Define a termination for convenience clause."]


def prompts(loaded) -> list[tuple[int, ...]]:
    chats = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}] for q in QUESTIONS]
    return [loaded.encode_chat(chat) for chat in chats]


def reference_greedy(loaded, prompt_ids, max_tokens) -> str:
    """transformers' own generate(), one prompt at a time: the answer batching must not change."""
    import torch

    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        output = loaded.model.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_tokens, do_sample=False,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
    return loaded.tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)


def test_batched_greedy_matches_generate_one_at_a_time_and_shares_the_prefix(engine):
    loaded = engine.loaded
    requests = [GenerationRequest(p, max_tokens=8) for p in prompts(loaded)]
    results, prefilled = generate_batch(loaded, requests, min_shared_prefix=16)
    assert [r.text for r in results] == [reference_greedy(loaded, p, 8) for p in prompts(loaded)]
    assert all(r.finish_reason == "length" and r.completion_tokens == 8 for r in results)
    total = sum(len(p) for p in prompts(loaded))
    assert prefilled < total - 16  # the common system prompt ran once, not three times


def test_logprobs_are_the_models_own_token_probabilities(engine):
    import torch

    loaded = engine.loaded
    prompt = prompts(loaded)[0]
    [result], _ = generate_batch(loaded, [GenerationRequest(prompt, max_tokens=5, logprobs=3)])
    scores = result.logprobs
    assert len(scores) == 5 and all(math.isfinite(s.logprob) and s.logprob <= 0 for s in scores)
    assert all(len(s.top) == 3 and s.top[0][1] == s.token_id for s in scores)  # greedy picks the top token
    generated = [s.token_id for s in scores]
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([list(prompt) + generated])).logits[0].float()
    expected = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)[range(5), generated]
    assert [s.logprob for s in scores] == pytest.approx(expected.tolist(), abs=1e-3)


def test_each_row_keeps_its_own_max_tokens_stop_and_seed(engine):
    loaded = engine.loaded
    first, second, third = prompts(loaded)
    [plain], _ = generate_batch(loaded, [GenerationRequest(first, max_tokens=10)])
    stop = plain.text[len(plain.text) // 2 :][:3]  # a string the greedy answer is known to contain
    requests = [
        GenerationRequest(first, max_tokens=10, stop=(stop,)),
        GenerationRequest(second, max_tokens=3),
        GenerationRequest(third, max_tokens=6, temperature=1.0, seed=7),
        GenerationRequest(third, max_tokens=6, temperature=1.0, seed=7, top_p=0.9, top_k=50),
    ]
    results, _ = generate_batch(loaded, requests)
    assert results[0].text == plain.text[: plain.text.index(stop)] and results[0].finish_reason == "stop"
    assert results[1].completion_tokens == 3 and results[1].finish_reason == "length"
    again, _ = generate_batch(loaded, [requests[2]])
    assert again[0].text == results[2].text  # a seeded sample does not depend on its batch-mates


def test_a_stored_prefix_is_reused_without_changing_the_answer(engine):
    loaded = engine.loaded
    first, second, _ = prompts(loaded)
    alone, _ = generate_batch(loaded, [GenerationRequest(second, max_tokens=6)])
    store = PrefixStore()
    generate_batch(loaded, [GenerationRequest(first, max_tokens=1)], prefixes=store)
    reused, prefilled = generate_batch(loaded, [GenerationRequest(second, max_tokens=6)], prefixes=store)
    assert reused[0].text == alone[0].text
    shared = common_prefix_length(first, second)
    assert shared > 20 and prefilled == len(second) - shared  # the system prompt came from the store


def test_rows_join_a_running_batch_and_leave_it_without_disturbing_each_other(engine):
    from clauseloop.engine.decoding import Row
    from clauseloop.engine.running import RunningBatch

    loaded = engine.loaded
    short = loaded.encode_chat([{"role": "user", "content": "Name a planet."}])
    long = prompts(loaded)[2]
    requests = [GenerationRequest(short, max_tokens=8), GenerationRequest(long, max_tokens=2)]
    alone = [generate_batch(loaded, [request])[0][0].text for request in requests]
    batch = RunningBatch(loaded)
    early, late = Row(requests[0]), Row(requests[1])
    batch.add([early])
    batch.step()
    batch.step()
    batch.add([late])  # wider than the running row: the running row's cache is padded on the left
    assert batch.width == len(long) and batch.size == 2
    while batch.size:
        batch.step()  # the late row leaves first; the padding it caused is trimmed away
    assert [early.result(loaded.tokenizer).text, late.result(loaded.tokenizer).text] == alone
