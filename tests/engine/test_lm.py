"""LocalLM behind DSPy with the real SmolLM2: parsing, concurrency, caching, log-probs, adapters, state."""

from __future__ import annotations

import copy
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import dspy
import pytest

from clauseloop.engine import LocalLM

pytestmark = pytest.mark.real_model


class ClauseTopic(dspy.Signature):
    """Name the topic of a contract clause and quote its key phrase."""

    clause: str = dspy.InputField()
    topic: str = dspy.OutputField()
    key_phrase: str = dspy.OutputField()


def clause_predictor() -> dspy.Predict:
    """Two demos show the 135M model DSPy's field format, which it does not follow zero-shot."""
    predictor = dspy.Predict(ClauseTopic)
    predictor.demos = [
        dspy.Example(clause="This Agreement shall be governed by the laws of Delaware.", topic="Governing Law",
                     key_phrase="laws of Delaware").with_inputs("clause"),
        dspy.Example(clause="Either party may terminate this Agreement on thirty days notice.", topic="Termination",
                     key_phrase="thirty days notice").with_inputs("clause"),
    ]
    return predictor


def test_predict_with_two_output_fields_parses_both(engine, fresh_cache):
    lm = LocalLM(max_tokens=40)
    with dspy.context(lm=lm):
        prediction = clause_predictor()(clause="This Agreement shall be governed by the laws of New York.")
    assert prediction.topic.strip() and prediction.key_phrase.strip()
    entry = lm.history[-1]
    assert entry["usage"]["prompt_tokens"] > 100 and 0 < entry["usage"]["completion_tokens"] <= 40


def test_concurrent_calls_with_different_settings_each_get_their_own_result(engine, fresh_cache):
    lm = LocalLM(cache=False)
    prompts = ["Name a planet.", "Name a colour.", "Name a fruit.", "Name a country."]
    settings = [{"max_tokens": 3}, {"max_tokens": 12}, {"max_tokens": 12, "stop": [" "]}, {"max_tokens": 6}]
    alone = [lm(p, **s)[0] for p, s in zip(prompts, settings)]  # one at a time: batches of one
    steps_before, row_steps_before = engine.stats.steps, engine.stats.row_steps
    barrier = threading.Barrier(len(prompts))

    def call(index: int) -> str:
        barrier.wait()  # release all four together so they share a batch
        return lm(prompts[index], **settings[index])[0]

    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(call, range(len(prompts))))
    assert together == alone
    mean_batch_size = (engine.stats.row_steps - row_steps_before) / (engine.stats.steps - steps_before)
    assert mean_batch_size > 1.5  # they decoded together
    assert " " not in together[2]
    assert len(lm.history) == 2 * len(prompts)
    assert all(e["usage"]["completion_tokens"] <= e["kwargs"]["max_tokens"] for e in lm.history)


def test_identical_greedy_requests_hit_dspy_cache_unless_disabled_or_rolled_out(engine, fresh_cache):
    lm = LocalLM(max_tokens=4)
    requests_before = engine.stats.requests
    first = lm("Say yes.")
    assert lm("Say yes.") == first and engine.stats.requests == requests_before + 1
    lm("Say yes.", cache=False)
    assert engine.stats.requests == requests_before + 2
    lm.copy(rollout_id=1, temperature=1.0)("Say yes.")
    assert engine.stats.requests == requests_before + 3


def test_logprobs_are_present_and_finite(engine, fresh_cache):
    [output] = LocalLM(max_tokens=5, cache=False)("Name a planet.", logprobs=True, top_logprobs=2)
    content = output["logprobs"]["content"]
    assert output["text"] and len(content) >= 1
    assert all(math.isfinite(t["logprob"]) and t["logprob"] <= 0 and len(t["top_logprobs"]) == 2 for t in content)
    assert "".join(t["token"] for t in content) == output["text"]


def test_n_samples_and_sampling_settings(engine, fresh_cache):
    outputs = LocalLM(max_tokens=4, temperature=1.0, cache=False)("Name a fruit.", n=3, seed=3)
    assert len(outputs) == 3 and all(isinstance(text, str) for text in outputs)


def test_a_random_lora_adapter_changes_the_output(engine, random_adapter, fresh_cache):
    base = LocalLM(max_tokens=8, cache=False)
    tuned = LocalLM(max_tokens=8, cache=False, adapter=random_adapter)
    assert tuned.model.endswith(random_adapter) and tuned.local_engine is not base.local_engine
    assert tuned("Name a planet.") != base("Name a planet.")
    tuned.local_engine.close()


def test_copies_share_one_engine_and_state_round_trips(engine):
    lm = LocalLM(max_tokens=7, temperature=0.0)
    assert lm.copy(temperature=0.5).local_engine is lm.local_engine is engine
    assert copy.deepcopy(lm).local_engine is engine  # optimizers deep-copy programs: the weights must not be
    state = lm.dump_state()
    assert state["model"] == "smollm2-135m-instruct" and state["max_tokens"] == 7 and "metadata" not in state
    restored = dspy.BaseLM.load_state(state, allow_custom_lm_class=True)
    assert isinstance(restored, LocalLM) and restored.kwargs == lm.kwargs


def test_async_calls_are_batched_too(engine, fresh_cache):
    import asyncio

    lm = LocalLM(max_tokens=3, cache=False)

    async def both():
        return await asyncio.gather(lm.acall("Name a planet."), lm.acall("Name a colour."))

    planet, colour = asyncio.run(both())
    assert planet == lm("Name a planet.") and colour == lm("Name a colour.")


def test_a_prompt_longer_than_the_window_raises_a_context_error(engine):
    from dspy.utils.exceptions import ContextWindowExceededError

    with pytest.raises(ContextWindowExceededError, match="context window"):
        LocalLM(max_tokens=4, cache=False)("clause " * 9000)


def test_close_stops_the_worker_thread_and_a_new_call_restarts_it(engine, fresh_cache):
    lm = LocalLM(max_tokens=2, cache=False)
    lm("Hi")
    lm.close()
    assert not engine.running
    # Other tests may leave other models' engines (the student's) running; only this engine's thread must be gone.
    assert not [t for t in threading.enumerate() if t.name == f"clauseloop-engine:{engine.name}"]
    lm("Hi")
    assert engine.running
