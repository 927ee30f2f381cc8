"""One model + one batching worker thread per (model, adapter) per process.

DSPy calls an LM one request at a time from many threads (``dspy.Evaluate``, ``dspy.Parallel``), and so do HTTP
clients of the server. A local model on CPU is several times faster per token in batches, so ``LocalEngine``
queues requests and a single worker thread decodes them together (continuous batching, see ``running.py``):

* an idle engine waits ``max_wait_ms`` after the newest arrival for company (never more than ``max_gather_ms``
  in all), so callers that arrive a few milliseconds apart start together and share their prompt prefix;
* the oldest request starts the batch, with the queued requests whose prompt lengths are within
  ``length_ratio`` of it — a single long prompt does not pad a batch of short ones;
* a row that finishes resolves its caller's future at once and leaves the batch; queued requests join between
  decoding steps, oldest first, while there is room and their length fits (so nothing starves);
* every request keeps its own settings (see ``decoding.py``) and its own future: no caller sees another's output.

The worker is a daemon thread started on the first request; ``close()`` stops it (a later request starts a new one).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from clauseloop.engine.config import EngineConfig
from clauseloop.engine.decoding import Row
from clauseloop.engine.model import LoadedModel, load_model
from clauseloop.engine.requests import EngineStats, GenerationRequest, GenerationResult
from clauseloop.engine.running import PrefixStore, RunningBatch

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    request: GenerationRequest
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class EngineClosed(RuntimeError):
    """The engine was closed while a request waited; send it again (a new worker starts on demand)."""


class LocalEngine:
    """A loaded model behind a micro-batching queue. Thread-safe; share one per model (see ``get_engine``)."""

    def __init__(self, loaded: LoadedModel, config: EngineConfig | None = None):
        self.loaded = loaded
        self.config = config or EngineConfig()
        self.stats = EngineStats()
        self._pending: list[_Pending] = []
        self._condition = threading.Condition()
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._prefixes = PrefixStore()  # used by the worker thread only

    @property
    def name(self) -> str:
        return self.loaded.name

    def encode_chat(self, messages: list[dict[str, str]]) -> tuple[int, ...]:
        return self.loaded.encode_chat(messages)

    def submit(self, request: GenerationRequest) -> Future:
        """Queue a request; the future resolves to a ``GenerationResult``. Raises ``RequestError`` if invalid."""
        pending = _Pending(request.checked(self.loaded.context_window))
        with self._condition:
            self._pending.append(pending)
            if self._worker is None or not self._worker.is_alive():
                self._stopping = False
                self._worker = threading.Thread(target=self._work, name=f"clauseloop-engine:{self.name}", daemon=True)
                self._worker.start()
            self._condition.notify_all()
        return pending.future

    def generate(self, request: GenerationRequest) -> GenerationResult:
        return self.submit(request).result()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the worker after its current batch; requests still queued fail with ``EngineClosed``."""
        with self._condition:
            worker, self._stopping = self._worker, True
            self._condition.notify_all()
        if worker is not None:
            worker.join(timeout)
            if worker.is_alive():
                logger.warning("engine worker for %s did not stop within %.0fs", self.name, timeout)
        with self._condition:
            if self._worker is worker:  # a request that arrived meanwhile may have started a fresh worker: keep it
                self._worker = None

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __deepcopy__(self, memo) -> LocalEngine:
        return self  # a handle on a process-wide resource: copies of programs must not clone the weights

    def _work(self) -> None:
        running = RunningBatch(self.loaded, prefixes=self._prefixes, min_shared_prefix=self.config.min_shared_prefix)
        try:
            while (group := self._next_batch()) is not None:
                self.stats.batches += 1
                self._admit(running, group)
                while running.size:
                    self._step(running)
                    if running.size and running.joinable and (joiners := self._take_joiners(running)):
                        self._admit(running, joiners)
        except BaseException as error:  # a bug here must fail the callers, not leave them waiting forever
            logger.exception("the engine worker for %s stopped", self.name)
            with self._condition:
                waiting, self._pending = self._pending, []
            for future in [p.future for p in waiting] + [row.owner for row in running.abandon()]:
                if not future.done():
                    future.set_exception(error)
            raise

    def _next_batch(self) -> list[_Pending] | None:
        with self._condition:
            while not self._pending and not self._stopping:
                self._condition.wait()
            if self._stopping:
                for pending in self._pending:
                    pending.future.set_exception(EngineClosed(f"the engine for {self.name} was closed"))
                self._pending.clear()
                return None
            self._wait_for_company()
            return self._take_bucket()

    def _wait_for_company(self) -> None:
        """Wait while requests keep arriving, until the batch is full or the caller has waited long enough."""
        wait, gather = self.config.max_wait_ms / 1000, self.config.max_gather_ms / 1000
        while len(self._pending) < self.config.max_batch_size and not self._stopping:
            deadline = min(self._pending[-1].arrived + wait, self._pending[0].arrived + gather)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._condition.wait(remaining)

    def _take_bucket(self) -> list[_Pending]:
        """The oldest request plus the queued ones closest to it in prompt length, within the batch limits."""
        self._pending = [p for p in self._pending if not p.future.cancelled()]
        if not self._pending:
            return []
        anchor = len(self._pending[0].request.prompt_ids)
        by_closeness = sorted(self._pending, key=lambda p: abs(math.log(len(p.request.prompt_ids) / anchor)))
        batch: list[_Pending] = []
        shortest = longest = anchor
        for pending in by_closeness:
            length = len(pending.request.prompt_ids)
            low, high = min(shortest, length), max(longest, length)
            fits_tokens = (len(batch) + 1) * high <= self.config.max_batch_tokens
            if batch and (high > self.config.length_ratio * low or not fits_tokens):
                continue
            batch.append(pending)
            shortest, longest = low, high
            if len(batch) == self.config.max_batch_size:
                break
        chosen = {id(p) for p in batch}
        self._pending = [p for p in self._pending if id(p) not in chosen]
        return batch

    def _take_joiners(self, running: RunningBatch) -> list[_Pending]:
        """Queued requests that may join the running batch: oldest first, stopping at the first that does not fit.

        Stopping there (instead of skipping it) lets the batch drain, so a long prompt is never starved.
        """
        joiners: list[_Pending] = []
        with self._condition:
            if self._stopping:
                return joiners
            self._pending = [p for p in self._pending if not p.future.cancelled()]
            width = running.width
            for pending in self._pending:
                length = len(pending.request.prompt_ids)
                rows = running.size + len(joiners) + 1
                if rows > self.config.max_batch_size or length > self.config.length_ratio * width:
                    break
                if rows * max(width, length) > self.config.max_batch_tokens:
                    break
                joiners.append(pending)
            del self._pending[: len(joiners)]
        return joiners

    def _admit(self, running: RunningBatch, group: list[_Pending]) -> None:
        rows = [Row(p.request, owner=p.future) for p in group if p.future.set_running_or_notify_cancel()]
        if not rows:
            return
        try:
            prefilled = running.add(rows)
        except Exception as error:  # a bad group must not kill the worker that serves everyone else
            logger.exception("prefilling %d request(s) failed", len(rows))
            for row in rows:
                row.owner.set_exception(error)
            return
        self.stats.prefilled_tokens += prefilled
        self.stats.prompt_tokens += sum(len(row.request.prompt_ids) for row in rows)
        self.stats.max_batch_size = max(self.stats.max_batch_size, running.size)

    def _step(self, running: RunningBatch) -> None:
        size = running.size
        try:
            finished = running.step()
        except Exception as error:
            logger.exception("decoding a batch of %d failed", size)
            for row in running.abandon():
                row.owner.set_exception(error)
            return
        self.stats.steps += 1
        self.stats.row_steps += size
        for row in finished:
            result = row.result(self.loaded.tokenizer)
            self.stats.requests += 1
            self.stats.completion_tokens += result.completion_tokens
            row.owner.set_result(result)


_ENGINES: dict[tuple, LocalEngine] = {}
_REGISTRY_LOCK = threading.Lock()


def get_engine(
    model: str, adapter: str | None = None, config: EngineConfig | None = None, *, load: bool = True
) -> LocalEngine | None:
    """The process-wide engine for (model, adapter), loading the model the first time (``load=False``: None).

    LocalLM copies and the server share it, so weights load once. Batching settings come from the first caller's
    ``config``; a later caller asking for a different dtype or adapter merge gets a separate engine.
    """
    config = config or EngineConfig()
    adapter_key = str(Path(adapter).expanduser().resolve()) if adapter else None
    key = (_model_key(model), adapter_key, config.dtype, config.merge_adapter)
    with _REGISTRY_LOCK:
        engine = _ENGINES.get(key)
        if engine is None and load:
            loaded = load_model(model, adapter, dtype=config.dtype, merge_adapter=config.merge_adapter)
            engine = _ENGINES[key] = LocalEngine(loaded, config)
        return engine


def close_engines() -> None:
    """Stop every engine's worker and drop the loaded models (tests, benchmarks, the end of a CLI command)."""
    with _REGISTRY_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.close()


def _model_key(model: str) -> str:
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model
