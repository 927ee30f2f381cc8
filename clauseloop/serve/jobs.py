"""Review jobs: one contract × many categories in a background thread, with progress to poll or stream.

Reviews run one at a time (one CPU-bound LM engine); within a review, ``threads`` categories are asked
concurrently so the engine batches them. A category that fails records its error and the review goes on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable

from clauseloop.data import Contract

logger = logging.getLogger(__name__)

Ask = Callable[[Contract, str], dict[str, Any]]


@dataclass
class ReviewJob:
    id: str
    contract_id: str
    categories: list[str]
    status: str = "queued"  # queued → running → done | failed
    results: dict[str, dict] = field(default_factory=dict)
    error: str | None = None
    model_version: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    revision: int = 0  # bumped on every change, so a stream knows when to send

    @property
    def finished_ok(self) -> bool:
        return self.status in ("done", "failed")

    def to_dict(self, results: bool = True) -> dict[str, Any]:
        end = self.finished or time.time()
        body = {
            "id": self.id, "contract_id": self.contract_id, "status": self.status, "done": len(self.results),
            "total": len(self.categories), "error": self.error, "model_version": self.model_version,
            "seconds": round(end - self.started, 1) if self.started else None,
        }
        if results:
            body["categories"] = self.categories
            body["results"] = dict(self.results)
        return body


class ReviewJobs:
    """Queue and run review jobs; ``get`` a snapshot by id. ``close`` drops queued jobs."""

    def __init__(self, ask: Ask, version: Callable[[], str], threads: int = 16, keep: int = 100):
        self._ask, self._version, self._threads, self._keep = ask, version, threads, keep
        self._runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clauseloop-review")
        self._jobs: OrderedDict[str, ReviewJob] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, contract: Contract, categories: list[str]) -> dict[str, Any]:
        job = ReviewJob(id=uuid.uuid4().hex[:16], contract_id=contract.id, categories=list(categories))
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        self._runner.submit(self._run, job, contract)
        return self.snapshot(job.id)

    def snapshot(self, job_id: str, results: bool = True) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise KeyError(f"unknown review job {job_id!r}; it may have expired (POST /api/review again)")
            return {**job.to_dict(results), "revision": job.revision}

    def counts(self) -> dict[str, int]:
        with self._lock:
            statuses = [job.status for job in self._jobs.values()]
        return {status: statuses.count(status) for status in ("queued", "running", "done", "failed")}

    def _run(self, job: ReviewJob, contract: Contract) -> None:
        self._update(job, status="running", started=time.time())
        try:
            self._update(job, model_version=self._version())
            with ThreadPoolExecutor(self._threads, thread_name_prefix="clauseloop-ask") as pool:
                futures = {pool.submit(self._ask, contract, category): category for category in job.categories}
                for future in as_completed(futures):
                    self._record(job, futures[future], future)
            self._update(job, status="done", finished=time.time())
        except Exception as error:  # noqa: BLE001 - the job reports it; the server keeps serving
            logger.exception("review %s of %s failed", job.id, job.contract_id)
            self._update(job, status="failed", error=f"{type(error).__name__}: {error}", finished=time.time())

    def _record(self, job: ReviewJob, category: str, future) -> None:
        try:
            result = future.result()
        except Exception as error:  # noqa: BLE001 - one category's failure is reported in its result
            logger.warning("review %s: %s failed: %s", job.id, category, error)
            result = {"spans": [], "gated": False, "dropped": 0, "error": f"{type(error).__name__}: {error}"}
        with self._lock:
            job.results[category] = result
            job.revision += 1

    def _update(self, job: ReviewJob, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(job, key, value)
            job.revision += 1

    def _forget_old(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished_ok]
        for job_id in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[job_id]

    def close(self) -> None:
        self._runner.shutdown(wait=False, cancel_futures=True)
