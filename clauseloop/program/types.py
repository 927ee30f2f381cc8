"""The small data shapes shared by the QA program, its metrics, the exporter and the judge.

* ``PredictedSpan`` — one answer span of the program: verbatim ``text``, its offsets in the contract (``start``,
  ``end``; ``None`` when the program could not locate it) and a ``confidence`` in [0, 1]. The program's prediction
  carries a list of them as ``pred.spans``; metrics also accept dicts with the same keys or bare strings
  (confidence 1.0), so hand-written predictions and JSON round-trips work unchanged.
* ``GoldQuestion`` — what the corpus scorer needs of a question: its id, contract, category and gold texts.
* ``example_from_question`` — a ``dspy.Example`` from a ``ClauseQuestion``. Inputs are ``contract_id``,
  ``category`` and ``question`` (the program retrieves the contract text by id); ``question_id``, ``description``
  and ``gold_spans`` (a list of gold texts, empty when the contract has no such clause) are labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import dspy

    from clauseloop.data import ClauseQuestion

EXAMPLE_INPUTS = ("contract_id", "category", "question")


@dataclass(frozen=True)
class PredictedSpan:
    """One predicted clause span. ``confidence`` is what CUAD calls the span's probability."""

    text: str
    start: int | None = None
    end: int | None = None
    confidence: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end, "confidence": self.confidence}

    @classmethod
    def coerce(cls, value: Any) -> "PredictedSpan":
        """A ``PredictedSpan`` from a span, a dict (``text`` plus optional keys), an object with ``.text`` or a str."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(text=value)
        get = value.get if isinstance(value, dict) else lambda key, default=None: getattr(value, key, default)
        text = get("text")
        if not isinstance(text, str):
            raise TypeError(
                f"a predicted span needs a str `text`; got {type(value).__name__} {value!r}. "
                "Return PredictedSpan(text=..., confidence=...) objects (or dicts with those keys) in `pred.spans`."
            )
        confidence = get("confidence", None)
        confidence = 1.0 if confidence is None else float(confidence)
        if not math.isfinite(confidence):
            raise ValueError(f"span confidence must be a finite number, got {confidence!r} for {text[:60]!r}")
        return cls(text=text, start=get("start", None), end=get("end", None), confidence=confidence)


@dataclass(frozen=True)
class GoldQuestion:
    """A question as the corpus scorer sees it. ``gold`` may hold duplicates: CUAD counts each one."""

    question_id: str
    contract_id: str
    category: str
    gold: tuple[str, ...] = ()

    @classmethod
    def from_question(cls, question: "ClauseQuestion") -> "GoldQuestion":
        return cls(question.id, question.contract_id, question.category, tuple(a.text for a in question.answers))

    @classmethod
    def from_example(cls, example: Any) -> "GoldQuestion":
        return cls(
            question_id=example.question_id,
            contract_id=example.contract_id,
            category=example.category,
            gold=tuple(gold_spans_of(example)),
        )


def predicted_spans(pred: Any) -> list[PredictedSpan]:
    """The spans of a prediction (``pred.spans``); a missing or ``None`` field means "no clause"."""
    spans = pred.get("spans", None) if isinstance(pred, dict) else getattr(pred, "spans", None)
    if spans is None:
        return []
    if isinstance(spans, (str, dict)) or not isinstance(spans, Iterable):
        spans = [spans]
    return [PredictedSpan.coerce(span) for span in spans]


def gold_spans_of(example: Any) -> list[str]:
    """The gold texts of an example (``gold_spans``); ``Span``-like objects are reduced to their text."""
    gold = example.get("gold_spans", None) if hasattr(example, "get") else getattr(example, "gold_spans", None)
    if gold is None:
        raise ValueError(
            "the example has no `gold_spans` field; build examples with "
            "clauseloop.program.example_from_question(question)"
        )
    return [g if isinstance(g, str) else g.text for g in gold]


def example_from_question(question: "ClauseQuestion") -> "dspy.Example":
    """A ``dspy.Example`` for one CUAD question, with ``EXAMPLE_INPUTS`` marked as its inputs."""
    import dspy

    example = dspy.Example(
        question_id=question.id,
        contract_id=question.contract_id,
        category=question.category,
        question=question.question,
        description=question.description,
        gold_spans=[answer.text for answer in question.answers],
    )
    return example.with_inputs(*EXAMPLE_INPUTS)
