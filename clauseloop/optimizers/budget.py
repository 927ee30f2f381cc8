"""LM-call accounting for optimizer runs: a hard ceiling, per-role counts, and a resumable disk cache.

DSPy looks every cacheable LM request up in ``dspy.cache`` before it reaches a model. An optimizer run swaps in a
:class:`MeteredCache` kept in the run's output directory (``OUT/cache``): a hit costs nothing and is not counted;
a miss is about to become a real LM call, so it is counted, and refused once ``max_calls`` calls have been made.
Everything already answered stays on disk, so re-running an interrupted (or budget-stopped) run replays the
finished calls from the cache and continues where it stopped. ``LocalLM`` requests carry a fingerprint of the
weights, so a retrained adapter never replays stale answers.

Roles: each LM a run uses gets a :class:`RoleTag` callback (copies of the LM, such as the ones DSPy makes for new
rollouts, keep it). The tag counts every request of its role and names the role of the cache lookup that follows.

Why the refusal is a ``BaseException``: DSPy's evaluators and bootstrapper catch ``Exception`` per example and carry
on, which would turn "budget spent" into a run of silently failed examples. :class:`BudgetStop` passes through them;
the optimizer turns it into :class:`CallBudgetExceeded` with the message for the user.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import dspy
from dspy.clients.cache import Cache
from dspy.utils.callback import BaseCallback

from clauseloop.engine.reachability import UNREACHABLE

logger = logging.getLogger(__name__)

UNTAGGED = "other"  # an LM the run did not tag (e.g. one a predictor brought along)
CACHE_SIZE_LIMIT_BYTES = 2 * 1024**3
_current_role: contextvars.ContextVar[str] = contextvars.ContextVar("clauseloop_lm_role", default=UNTAGGED)
_NOT_SET = object()


class BudgetStop(BaseException):
    """Raised inside DSPy when the call budget is spent (see the module docstring for why not ``Exception``)."""


class CallBudgetExceeded(RuntimeError):
    """An optimizer run reached its LM-call ceiling; what finished is cached and a re-run continues from there."""


class CallMeter:
    """Counts LM requests and real (uncached) LM calls per role, and refuses calls beyond ``max_calls``."""

    def __init__(self, max_calls: int | None = None):
        self.max_calls = max_calls
        self.requests: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.cache_hits: Counter[str] = Counter()
        self.exhausted = False
        # role -> the first "could not reach the LM" error: teleprompters log and skip failed examples, so a dead
        # teacher would otherwise yield a program quietly compiled without it
        self.unreachable: dict[str, Exception] = {}
        self._lock = threading.Lock()

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def record_request(self, role: str) -> None:
        with self._lock:
            self.requests[role] += 1

    def record_cache_hit(self, role: str) -> None:
        with self._lock:
            self.cache_hits[role] += 1

    def reserve_call(self, role: str) -> None:
        """Count one real LM call of ``role``, or raise :class:`BudgetStop` when the ceiling is reached."""
        with self._lock:
            if self.max_calls is not None and self.total_calls >= self.max_calls:
                self.exhausted = True
                raise BudgetStop(f"LM call budget of {self.max_calls} spent")
            self.calls[role] += 1

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts: ``calls`` reached a model, ``cache_hits`` were replayed, ``requests`` are all of them.

        ``unmetered``: requests of LMs that never consult the cache (``DummyLM``, ``cache=False`` clients), so
        neither replayed nor counted against the ceiling.
        """
        with self._lock:
            calls, hits, requests = (sum(c.values()) for c in (self.calls, self.cache_hits, self.requests))
            return {
                "calls": dict(sorted(self.calls.items())),
                "total_calls": calls,
                "cache_hits": dict(sorted(self.cache_hits.items())),
                "requests": dict(sorted(self.requests.items())),
                "total_requests": requests,
                "unmetered": max(requests - calls - hits, 0),
                "max_calls": self.max_calls,
            }


class RoleTag(BaseCallback):
    """Marks the LM calls of one role (teacher, student) for the meter."""

    def __init__(self, role: str, meter: CallMeter):
        self.role, self.meter = role, meter

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        # The cache lookup runs right after this, in the same thread and context: it reads the role from here.
        _current_role.set(self.role)
        self.meter.record_request(self.role)

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        _current_role.set(UNTAGGED)
        if isinstance(exception, UNREACHABLE):
            self.meter.unreachable.setdefault(self.role, exception)


def tagged_lm(lm: Any, role: str, meter: CallMeter) -> Any:
    """A copy of ``lm`` whose calls are counted as ``role`` and cached (the caller's LM is left as it was)."""
    tagged = lm.copy()
    tagged.callbacks = [*getattr(tagged, "callbacks", []), RoleTag(role, meter)]
    if hasattr(tagged, "cache"):
        tagged.cache = True  # resumability and the budget both work through the cache
    return tagged


class MeteredCache(Cache):
    """DSPy's cache (memory + disk) that counts each miss as a real LM call and enforces the ceiling."""

    def __init__(self, directory: str | Path | None, meter: CallMeter):
        super().__init__(
            enable_disk_cache=directory is not None,
            enable_memory_cache=True,
            disk_cache_dir=str(directory) if directory is not None else None,
            disk_size_limit_bytes=CACHE_SIZE_LIMIT_BYTES,
            # Only plain data is unpickled: a cache directory copied from elsewhere cannot run code.
            restrict_pickle=True,
        )
        self.meter = meter

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        found = super().get(request, ignored_args_for_cache_key)
        if found is None:
            self.meter.reserve_call(_current_role.get())
        else:
            self.meter.record_cache_hit(_current_role.get())
        return found

    def close(self) -> None:
        if self.enable_disk_cache:
            self.disk_cache.close()


@contextmanager
def metered_cache(directory: str | Path | None, meter: CallMeter) -> Iterator[MeteredCache]:
    """Make a :class:`MeteredCache` DSPy's cache for the block, then put the previous one back.

    ``dspy.configure_cache`` builds a plain ``Cache``; this installs the subclass the same way (under DSPy's own
    cache lock) and restores the previous cache, or DSPy's lazily built default when none was built yet.
    """
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
    cache = MeteredCache(directory, meter)
    with dspy._cache_lock:
        previous = vars(dspy).get("cache", _NOT_SET)
        dspy.cache = cache
    try:
        yield cache
    finally:
        with dspy._cache_lock:
            if previous is _NOT_SET:
                vars(dspy).pop("cache", None)
            else:
                dspy.cache = previous
        cache.close()


def budget_message(meter: CallMeter, cache_dir: str | Path | None) -> str:
    where = f"cached in {cache_dir}" if cache_dir is not None else "kept in memory only (no cache directory)"
    return (
        f"stopped after {meter.total_calls} LM calls, the --max-calls ceiling of {meter.max_calls}; the finished "
        f"calls are {where}, so re-running the same command with a larger --max-calls continues from there"
    )
