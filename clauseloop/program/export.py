"""Predictions in CUAD's official ``nbest_predictions`` form, so CUAD's own ``evaluate.py`` can score them.

The form is ``{question_id: [{"text": str, "probability": float}, ...]}`` with one key per gold question (the
official scorer asserts the key sets are equal). We list spans by descending probability; a span text predicted
twice is listed once with its highest confidence (the official scorer would keep whichever came last); a question
answered with no span gets ``[{"text": "", "probability": 1.0}]`` — the SQuAD 2.0 "no answer", which the official
scorer skips. The official script reads ``<model_dir>/nbest_predictions_.json`` (``OFFICIAL_FILENAME``).

Gold can be written in the SQuAD layout the official script reads (``write_squad_gold``), so a dev split of ours is
scored by the official script on exactly the same questions.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from clauseloop.program.types import PredictedSpan

OFFICIAL_FILENAME = "nbest_predictions_.json"
NO_ANSWER = {"text": "", "probability": 1.0}


def nbest_entries(spans: Iterable[Any]) -> list[dict[str, Any]]:
    """One question's nbest list from its predicted spans (``PredictedSpan``, dicts or str)."""
    best: dict[str, float] = {}
    for span in map(PredictedSpan.coerce, spans):
        if span.text:
            best[span.text] = max(span.confidence, best.get(span.text, -math.inf))
    if not best:
        return [dict(NO_ANSWER)]
    ranked = sorted(best.items(), key=lambda item: -item[1])  # stable: ties keep prediction order
    return [{"text": text, "probability": probability} for text, probability in ranked]


def to_nbest(answers: Iterable[tuple[str, Iterable[Any]]]) -> dict[str, list[dict[str, Any]]]:
    """``{question_id: nbest list}`` from ``(question_id, spans)`` pairs; a repeated question id is an error."""
    nbest: dict[str, list[dict[str, Any]]] = {}
    for question_id, spans in answers:
        if question_id in nbest:
            raise ValueError(f"question {question_id!r} was predicted twice; pass one prediction per question")
        nbest[question_id] = nbest_entries(spans)
    return nbest


def validate_nbest(nbest: Any) -> dict[str, list[dict[str, Any]]]:
    """Check the official shape; raises ``ValueError`` naming the first bad entry."""
    if not isinstance(nbest, dict):
        raise ValueError(f"nbest predictions must be a JSON object of question id → list, got {type(nbest).__name__}")
    for question_id, entries in nbest.items():
        if not isinstance(entries, list):
            raise ValueError(f"nbest[{question_id!r}] must be a list of {{'text', 'probability'}} objects")
        for entry in entries:
            ok = isinstance(entry, dict) and isinstance(entry.get("text"), str)
            if not ok or not isinstance(entry.get("probability"), (int, float)):
                raise ValueError(
                    f"nbest[{question_id!r}] has a malformed entry {entry!r}: "
                    "each needs a str 'text' and a number 'probability'"
                )
    return nbest


def write_nbest(
    path: str | Path, nbest: Mapping[str, Sequence[Mapping[str, Any]]], manifest: Mapping[str, Any] | None = None
) -> Path:
    """Write the nbest JSON (only the official form inside) and, next to it, ``<name>.manifest.json``.

    A directory ``path`` gets the official file name. The manifest records ``manifest`` (config, data fingerprint…)
    plus the question count, library versions and the time of writing.
    """
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / OFFICIAL_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(validate_nbest(dict(nbest)), indent=1, ensure_ascii=False))
    record = {
        **dict(manifest or {}),
        "format": "cuad-nbest-predictions",
        "n_questions": len(nbest),
        "versions": _versions(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path.with_name(path.stem + ".manifest.json").write_text(json.dumps(record, indent=2))
    return path


def read_nbest(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Load and validate an nbest file (a directory means its ``OFFICIAL_FILENAME``)."""
    path = Path(path)
    if path.is_dir():
        path = path / OFFICIAL_FILENAME
    if not path.exists():
        raise FileNotFoundError(f"no nbest predictions at {path}; write them with clauseloop.program.write_nbest")
    return validate_nbest(json.loads(path.read_text()))


def squad_gold(questions: Sequence[Any], contracts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Gold ``ClauseQuestion``s in the SQuAD layout of ``CUADv1.json`` (contexts included when ``contracts``)."""
    by_contract: dict[str, list[dict[str, Any]]] = {}
    for q in questions:
        by_contract.setdefault(q.contract_id, []).append({
            "id": q.id,
            "question": q.question,
            "is_impossible": not q.answers,
            "answers": [{"text": a.text, "answer_start": a.start} for a in q.answers],
        })
    data = []
    for contract_id, qas in by_contract.items():
        contract = (contracts or {}).get(contract_id)
        paragraph = {"context": contract.text, "qas": qas} if contract is not None else {"qas": qas}
        data.append({"title": contract.title if contract is not None else contract_id, "paragraphs": [paragraph]})
    return {"version": "clauseloop-gold", "data": data}


def write_squad_gold(path: str | Path, questions: Sequence[Any], contracts: Mapping[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(squad_gold(questions, contracts), ensure_ascii=False))
    return path


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("clauseloop", "dspy", "numpy"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found
