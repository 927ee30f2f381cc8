"""DSPy's fine-tuning API for the local student: a finetunable ``dspy.Provider`` that trains with :func:`train_sft`.

``LocalLM`` carries a ``LocalFinetuneProvider`` by default, so DSPy's own teleprompter distils a teacher program
into the local model — the rows DSPy renders become TRL prompt-completion rows and a LoRA adapter, and the student's
predictors end up on ``LocalLM("BASE+RUN_DIR/adapter")``::

    import dspy
    from clauseloop.engine import LocalLM
    from clauseloop.finetune.provider import LocalBootstrapFinetune

    student = dspy.Predict("clause -> category")
    student.set_lm(LocalLM(max_tokens=32))               # every predictor needs its own LM
    teacher = dspy.Predict("clause -> category")          # a separate program with the same predictor names
    teacher.set_lm(dspy.LM("openai/gpt-4o-mini"))
    optimizer = LocalBootstrapFinetune(metric=lambda ex, pred, trace=None: ex.category == pred.category,
                                       num_threads=1, train_kwargs={"max_steps": 50, "out": "runs/distill"})
    tuned = optimizer.compile(student, trainset=trainset, teacher=teacher)
    tuned.predictors()[0].lm.adapter                       # "…/runs/distill/adapter"

``train_kwargs`` are :class:`~clauseloop.finetune.sft.SFTRunConfig` fields (``max_steps``, ``learning_rate``,
``batch_size``, …) plus ``out``, the run directory. Without ``out`` each job gets a fresh
``runs/dspy-finetune/<UTC time>-<data hash>`` under the current directory (where the project keeps every run; it is
git-ignored), made absolute so the tuned model string works from any directory. The directory holds ``data.jsonl``
(the rows trained on), ``adapter/`` and the trainer's ``checkpoints/``. The base model and the adapter to continue
come from the LM being tuned (``BASE+ADAPTER`` continues ``ADAPTER``), so ``data``, ``base_model`` and
``from_adapter`` are refused as train_kwargs.

``LocalBootstrapFinetune`` is ``dspy.BootstrapFinetune`` minus one crash: a teacher answer that does not parse is a
``FailedPrediction`` scoring -1, which is truthy, passes the metric filter and breaks DSPy's row rendering; such
traces are left out (and counted) instead. Plain ``dspy.BootstrapFinetune`` works whenever the teacher's answers
parse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dspy.clients.provider import Provider, TrainingJob
from dspy.clients.utils_finetune import TrainDataFormat
from dspy.teleprompt.bootstrap_finetune import BootstrapFinetune
from dspy.teleprompt.bootstrap_trace import FailedPrediction

from clauseloop.engine.roles import LOCAL_PREFIX, is_local_model
from clauseloop.models import split_adapter

logger = logging.getLogger(__name__)

DEFAULT_RUNS_ROOT = Path("runs") / "dspy-finetune"
DATA_FILE = "data.jsonl"
# SFTRunConfig fields the provider fills from the LM and the rows, never from train_kwargs
FROM_THE_LM = ("data", "base_model", "from_adapter")


def _sft_config_class():
    # sft.py imports only the standard library and clauseloop at module level, so this stays cheap
    from clauseloop.finetune.sft import SFTRunConfig

    return SFTRunConfig


def _sft_field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(_sft_config_class()))


def valid_train_kwargs() -> list[str]:
    """The keys ``train_kwargs`` may hold: ``SFTRunConfig`` fields other than those taken from the LM."""
    return sorted(name for name in _sft_field_names() if name not in FROM_THE_LM)


def check_train_kwargs(train_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``train_kwargs`` as a plain dict; ``ValueError`` naming the valid keys for anything else."""
    train_kwargs = dict(train_kwargs or {})
    from_lm = sorted(set(FROM_THE_LM) & set(train_kwargs))
    if from_lm:
        raise ValueError(
            f"train_kwargs {from_lm} come from the LM being tuned, not from train_kwargs: tune "
            "LocalLM('BASE') for a new adapter or LocalLM('BASE+ADAPTER_DIR') to continue that adapter"
        )
    unknown = sorted(set(train_kwargs) - set(valid_train_kwargs()))
    if unknown:
        raise ValueError(f"unknown train_kwargs {unknown}; valid keys are {valid_train_kwargs()}")
    _sft_config_class()(**train_kwargs)  # the config's own checks (max_steps >= 1, …), before any data is prepared
    return train_kwargs


def check_chat_format(train_data_format: TrainDataFormat | str | None) -> None:
    """Only chat rows can become prompt-completion rows; say how to get them otherwise."""
    try:
        data_format = TrainDataFormat(train_data_format)
    except ValueError:
        data_format = train_data_format
    if data_format != TrainDataFormat.CHAT:
        raise ValueError(
            f"LocalFinetuneProvider trains on chat rows only (TrainDataFormat.CHAT), got {train_data_format!r}; "
            "use a chat adapter (dspy.ChatAdapter or dspy.JSONAdapter, e.g. BootstrapFinetune(adapter=dspy.ChatAdapter()))"
        )


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("role"), str) and isinstance(value.get("content"), str)


def _skip_reason(row: Any) -> str | None:
    """Why a DSPy chat row cannot train, or None when it can."""
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or len(messages) < 2:
        return "not a chat row with a prompt and an answer"
    answer = messages[-1]
    if not isinstance(answer, dict) or answer.get("role") != "assistant":
        return "last message is not the assistant's"
    if not isinstance(answer.get("content"), str) or not answer["content"].strip():
        return "empty or non-text assistant answer"
    if not all(_is_message(message) for message in messages[:-1]):
        return "a prompt message without text content"
    return None


def prompt_completion_rows(train_data: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Counter]:
    """DSPy chat rows (``{"messages": [system, user, …, assistant]}``) as TRL conversational prompt-completion rows
    (``{"prompt": messages[:-1], "completion": [messages[-1]]}``, so the loss falls on the answer only).

    Returns the rows and a count of the rows left out, by reason; each left-out row is logged once, summarised.
    """
    rows, skipped = [], Counter()
    for row in train_data:
        reason = _skip_reason(row)
        if reason:
            skipped[reason] += 1
            continue
        messages = row["messages"]
        prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": messages[-1]["content"]}]})
    if skipped:
        logger.warning("left out %d of %d fine-tuning rows: %s", sum(skipped.values()), len(train_data),
                       dict(skipped))
    return rows, skipped


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def run_directory(out: str | None, data: bytes, model: str) -> Path:
    """``out`` if given, else a new ``runs/dspy-finetune/<UTC time>-<hash of data and model>``; always absolute."""
    if out:
        return Path(out).expanduser().resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(data + model.encode("utf-8")).hexdigest()[:10]
    root = DEFAULT_RUNS_ROOT.resolve()
    candidate, attempt = root / f"{stamp}-{digest}", 1
    while candidate.exists():  # the same rows tuned twice within a second
        attempt += 1
        candidate = root / f"{stamp}-{digest}-{attempt}"
    return candidate


class LocalTrainingJob(TrainingJob):
    """One local SFT run behind DSPy's ``TrainingJob`` future (``job.result()`` is the tuned ``LocalLM``).

    Checks the format and ``train_kwargs`` as it is created, so ``lm.finetune(...)`` refuses bad settings at once
    instead of from the training thread. After training, ``run_dir``, ``adapter_dir``, ``metrics`` and
    ``skipped_rows`` describe the run.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        check_chat_format(self.train_data_format)
        check_train_kwargs(self.train_kwargs)
        self.phase = "pending"
        self.run_dir: str | None = None
        self.adapter_dir: str | None = None
        self.metrics: dict[str, Any] = {}
        self.skipped_rows: dict[str, int] = {}
        self.stop_requested = threading.Event()

    def status(self) -> str:
        """``pending``, ``training``, ``succeeded``, ``failed`` or ``cancelled``."""
        if self.done():
            return "failed" if isinstance(self.result(), Exception) else "succeeded"
        return self.phase

    def cancel(self) -> bool:
        """Ask the trainer to stop after its current step; the job then resolves to a ``RuntimeError``.

        The future itself is not cancelled: DSPy's training thread still sets its result.
        """
        if self.done():
            return False
        self.stop_requested.set()
        self.phase = "cancelled"
        return True


def _stop_on_request(job: LocalTrainingJob):
    """A trainer callback that ends training at the next step once ``job.cancel()`` was called."""
    from transformers import TrainerCallback

    class StopOnRequest(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if job.stop_requested.is_set():
                control.should_training_stop = True

    return StopOnRequest()


class LocalFinetuneProvider(Provider):
    """Fine-tunes local models (model-store names, directories, ``BASE+ADAPTER``) with :func:`train_sft`.

    ``launch``/``kill`` are DSPy's no-ops: the local engine loads weights on the first call and shares them across
    LMs, and training loads its own copy, so there is nothing to start or free around a job.
    """

    def __init__(self) -> None:
        super().__init__()
        self.finetunable = True
        self.TrainingJob = LocalTrainingJob

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    @staticmethod
    def is_provider_model(model: str) -> bool:
        return is_local_model(model)

    @staticmethod
    def finetune(
        job: LocalTrainingJob,
        model: str,
        train_data: list[dict[str, Any]],
        train_data_format: TrainDataFormat | str | None,
        train_kwargs: dict[str, Any] | None = None,
    ) -> str:
        """Train a LoRA adapter on DSPy's chat rows and return the tuned model string ``BASE+ADAPTER_DIR``.

        ``model`` is ``BASE`` (a new adapter) or ``BASE+ADAPTER`` (``ADAPTER`` is trained further).
        """
        from clauseloop.finetune.sft import SFTRunConfig, train_sft

        check_chat_format(train_data_format)
        settings = check_train_kwargs(train_kwargs)
        rows, skipped = prompt_completion_rows(train_data)
        if not rows:
            raise ValueError(
                f"none of the {len(train_data)} fine-tuning rows has an assistant answer to train on "
                f"({dict(skipped)}); check that the teacher's outputs parse and pass the metric"
            )
        base, adapter = split_adapter(model.removeprefix(LOCAL_PREFIX))
        data = _jsonl(rows)
        run_dir = run_directory(settings.pop("out", None), data, model)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / DATA_FILE).write_bytes(data)
        job.phase, job.run_dir, job.skipped_rows = "training", str(run_dir), dict(skipped)
        logger.info("fine-tuning %s on %d rows in %s", model, len(rows), run_dir)
        config = SFTRunConfig(data=str(run_dir / DATA_FILE), out=str(run_dir), base_model=base,
                              from_adapter=adapter, **settings)
        result = train_sft(config, callbacks=[_stop_on_request(job)])
        job.adapter_dir, job.metrics = result.adapter_dir, result.metrics
        if job.stop_requested.is_set():
            raise RuntimeError(
                f"fine-tuning was cancelled after step {result.metrics.get('steps')}; the partial adapter is in "
                f"{result.adapter_dir} (train again with out={str(run_dir)!r} and resume=True to finish it)"
            )
        return f"{base}+{result.adapter_dir}"


def without_failed_parses(trace_data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The traces in which every predictor's output parsed (``FailedPrediction`` rows cannot be rendered)."""
    def parsed(item: dict[str, Any]) -> bool:
        outputs = [item.get("prediction"), *(step[2] for step in item.get("trace", []))]
        return not any(isinstance(output, FailedPrediction) for output in outputs)

    kept = [item for item in trace_data if parsed(item)]
    if len(kept) < len(trace_data):
        logger.warning("left out %d of %d teacher traces whose output did not parse",
                       len(trace_data) - len(kept), len(trace_data))
    return kept


class LocalBootstrapFinetune(BootstrapFinetune):
    """``dspy.BootstrapFinetune`` that leaves out teacher traces whose output failed to parse (see the module doc)."""

    def _prepare_finetune_data(self, trace_data, lm, pred_ind=None):
        return super()._prepare_finetune_data(trace_data=without_failed_parses(trace_data), lm=lm, pred_ind=pred_ind)
