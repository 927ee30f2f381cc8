"""SFT rows in the student's own prompt format: what ``ContractQA`` sends the LM, and what it should answer.

A row is TRL's conversational prompt-completion form — ``prompt`` is the system and user messages DSPy's
``ChatAdapter`` renders for ``ExtractClauses`` (the same text the program sends at inference, without demos),
``completion`` is the assistant message with the ``clauses`` field — plus bookkeeping columns: ``source``
(gold | teacher | synthetic), ``contract_id``, ``category``, ``question`` (a free question, for synthetic rows),
``quotes`` (the answer as a list; empty = NONE), ``score`` and ``id`` (a hash of prompt and completion, used to
drop duplicates). Training on the completion only is TRL's default for this form.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Sequence

from clauseloop.data import Contract

SOURCES = ("gold", "teacher", "synthetic")
NONE_ANSWER = "NONE"


def _adapter_messages(task: str, passages: str, quotes: Sequence[str]) -> list[dict[str, str]]:
    import dspy

    from clauseloop.program.qa import ExtractClauses

    answer = "\n".join(quotes) if quotes else NONE_ANSWER
    rendered = dspy.ChatAdapter().format_finetune_data(
        ExtractClauses, demos=[], inputs={"category": task, "passages": passages}, outputs={"clauses": answer}
    )
    return rendered["messages"]


def row_id(prompt: Sequence[dict], completion: Sequence[dict]) -> str:
    """A content hash of what the student sees and answers: equal rows from two sources count once."""
    payload = json.dumps([prompt, completion], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def render_row(
    *,
    task: str,
    passages: str,
    quotes: Sequence[str],
    source: str,
    contract_id: str,
    category: str | None,
    question: str | None = None,
    score: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One SFT row. ``task`` and ``passages`` are the two inputs exactly as the program fills them
    (:func:`clauseloop.program.qa.category_prompt`, :func:`~clauseloop.program.qa.format_passages`)."""
    if source not in SOURCES:
        raise ValueError(f"unknown row source {source!r}; use one of {', '.join(SOURCES)}")
    system, user, assistant = _adapter_messages(task, passages, quotes)
    prompt, completion = [system, user], [assistant]
    return {
        "prompt": prompt,
        "completion": completion,
        "source": source,
        "contract_id": contract_id,
        "category": category,
        "question": question,
        "quotes": list(quotes),
        "score": score,
        "id": row_id(prompt, completion),
        **extra,
    }


def collapse(text: str) -> str:
    """Whitespace collapsed as ``format_passages`` shows it, so a quote is verbatim prompt text."""
    return " ".join(text.split())


def shown_part(contract: Contract, start: int, end: int, windows: Sequence[tuple[int, int]]) -> str:
    """The part of ``contract.text[start:end]`` inside the shown ``windows`` (cut at word boundaries), or ""."""
    text = contract.text
    overlaps = [(max(start, ws), min(end, we)) for ws, we in windows if max(start, ws) < min(end, we)]
    if not overlaps:
        return ""
    # windows are the merged excerpts the LM reads: a quote cannot run across two of them
    lo, hi = max(overlaps, key=lambda pair: pair[1] - pair[0])
    # a window edge inside a word would leave half a word the LM cannot copy from a whole-word passage
    if lo > start and lo < len(text) and not text[lo - 1].isspace():
        while lo < hi and not text[lo].isspace():
            lo += 1
    if hi < end and hi > 0 and not text[hi].isspace():
        while hi > lo and not text[hi - 1].isspace():
            hi -= 1
    return collapse(text[lo:hi])


def program_inputs(program: Any, contract: Contract, category: str | None, question: str | None):
    """``(task, passages_text, windows)`` the QA ``program`` would show its LM for this question; ``windows``
    are the shown excerpts (overlapping passages merged, as the LM reads them)."""
    from clauseloop.program.qa import category_prompt, format_passages, merge_overlapping

    passages = program.retrieve(contract, category, question)
    task = category_prompt(category, question, program.config.max_description_chars)
    return task, format_passages(passages, contract.text), merge_overlapping(passages, contract.text)
