"""Request validation and batch scheduling: pure logic, no model."""

from __future__ import annotations

import pytest

from clauseloop.engine.batcher import LocalEngine, _Pending
from clauseloop.engine.config import EngineConfig
from clauseloop.engine.requests import GenerationRequest, RequestError


def request(prompt_length: int = 10, **settings) -> GenerationRequest:
    max_tokens = settings.pop("max_tokens", 8)
    return GenerationRequest(prompt_ids=tuple(range(prompt_length)), max_tokens=max_tokens, **settings)


def test_checked_clamps_max_tokens_to_the_room_left_in_the_window():
    assert request(10, max_tokens=100).checked(context_window=50).max_tokens == 40
    assert request(10, max_tokens=5).checked(context_window=50).max_tokens == 5


@pytest.mark.parametrize(
    ("bad", "param", "code"),
    [
        (request(0), "messages", "invalid_request"),
        (request(10, max_tokens=0), "max_tokens", "invalid_request"),
        (request(64), "messages", "context_length_exceeded"),
        (request(10, temperature=3.0), "temperature", "invalid_request"),
        (request(10, top_p=0.0), "top_p", "invalid_request"),
        (request(10, top_k=0), "top_k", "invalid_request"),
        (request(10, logprobs=21), "top_logprobs", "invalid_request"),
        (request(10, stop=("",)), "stop", "invalid_request"),
    ],
)
def test_checked_refuses_bad_requests_naming_the_parameter(bad, param, code):
    with pytest.raises(RequestError) as raised:
        bad.checked(context_window=64)
    assert raised.value.param == param and raised.value.code == code


def scheduler(**config) -> LocalEngine:
    return LocalEngine(loaded=None, config=EngineConfig(**config))  # _take_bucket never touches the model


def queue(engine: LocalEngine, lengths: list[int]) -> list[_Pending]:
    engine._pending = [_Pending(request(length)) for length in lengths]
    return list(engine._pending)


def test_a_long_prompt_does_not_join_a_batch_of_short_ones():
    engine = scheduler(length_ratio=2.0)
    short_a, long_one, short_b, short_c = queue(engine, [100, 900, 120, 80])
    assert engine._take_bucket() == [short_a, short_b, short_c]
    assert engine._take_bucket() == [long_one]  # it still runs next, on its own
    assert engine._pending == []


def test_the_oldest_request_always_goes_first_and_batches_respect_the_size_limit():
    engine = scheduler(max_batch_size=2)
    pending = queue(engine, [50, 10, 50, 50])
    first = engine._take_bucket()
    assert first[0] is pending[0] and len(first) == 2 and pending[1] not in first
    assert engine._take_bucket()[0] is pending[1]  # the odd one out is now the oldest


def test_padded_prompt_tokens_per_batch_are_bounded():
    engine = scheduler(max_batch_tokens=300)
    queue(engine, [100, 100, 100, 100])
    assert len(engine._take_bucket()) == 3


def test_cancelled_requests_are_dropped():
    engine = scheduler()
    kept, cancelled = queue(engine, [10, 10])
    cancelled.future.cancel()
    assert engine._take_bucket() == [kept]


def test_engine_config_rejects_nonsense():
    with pytest.raises(ValueError, match="max_batch_size"):
        EngineConfig(max_batch_size=0)
    with pytest.raises(ValueError, match="length_ratio"):
        EngineConfig(length_ratio=0.5)


class _Running:
    """What _take_joiners reads of a running batch."""

    def __init__(self, size: int, width: int):
        self.size, self.width = size, width


def test_joiners_come_oldest_first_and_a_misfit_blocks_the_ones_behind_it():
    engine = scheduler(max_batch_size=4, length_ratio=2.0)
    short, long_one, later = queue(engine, [30, 500, 30])
    assert engine._take_joiners(_Running(size=1, width=100)) == [short]
    # The long prompt does not fit, and the short one behind it must not overtake it forever: the batch drains.
    assert engine._take_joiners(_Running(size=1, width=100)) == []
    assert engine._pending == [long_one, later]


def test_joiners_respect_the_room_left_in_the_batch():
    engine = scheduler(max_batch_size=4)
    queue(engine, [10, 10, 10])
    assert len(engine._take_joiners(_Running(size=2, width=50))) == 2
    assert engine._take_joiners(_Running(size=4, width=50)) == []
