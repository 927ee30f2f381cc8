"""Teacher traces: the (compiled) QA program run on the teacher LM over train questions, kept when they score.

DSPy's ``BootstrapFinetune`` keeps a trace when the metric is *truthy*; here a trace is kept only when its CUAD
per-question F1 against the gold is at least ``min_score``, so the student learns from answers that are right
by the official matching, not from any answer that parsed. A reply that broke the output format is dropped and
counted (``parse_failed``) even when its text could be grounded, and so is a question the presence gate answered
without the LM (``gated``: there is no LM answer to learn from).

The row shows the student what the program showed the teacher — the category text and the passages, *without*
the compiled program's demos (the student is distilled to answer zero-shot) — and answers with the teacher's
grounded quotes that lie inside those passages (a quote found elsewhere in the contract is not something the
student could have copied from its prompt; such quotes are dropped and counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from clauseloop.data import ClauseQuestion, Contract, CuadDataset
from clauseloop.finetune.dataset import SFTDataset, build_per_contract
from clauseloop.finetune.rows import collapse, render_row
from clauseloop.program.metrics import score_example
from clauseloop.program.types import example_from_question

SOURCE = "teacher"


@dataclass(frozen=True)
class TraceConfig:
    """Which train questions the teacher answers, and which answers become rows."""

    min_score: float = field(default=0.5, metadata={"help": "Keep a trace when its CUAD F1 is at least this."})
    questions_per_contract: int | None = field(
        default=8, metadata={"help": "Teacher questions per contract (answerable first); None: all 41."}
    )
    threads: int = field(default=16, metadata={"help": "Concurrent teacher requests (the local engine batches)."})


def pick_questions(questions: Sequence[ClauseQuestion], limit: int | None) -> list[ClauseQuestion]:
    """Answerable questions first (they teach quoting), then the rest, in category order; at most ``limit``."""
    ordered = sorted(questions, key=lambda q: (not q.answerable, q.category))
    return ordered if limit is None else ordered[:limit]


def inside_shown(spans: Sequence[Any], passages: Sequence[Any], text: str) -> tuple[list[str], int]:
    """The spans' texts that lie inside the shown (merged) passages, and how many did not."""
    from clauseloop.program.qa import merge_overlapping

    windows = merge_overlapping(passages, text)
    kept = [collapse(s.text) for s in spans if any(ws <= s.start and s.end <= we for ws, we in windows)]
    return list(dict.fromkeys(kept)), len(spans) - len(kept)


def trace_row(
    program: Any, contract: Contract, question: ClauseQuestion, prediction: Any, min_score: float, counts: dict
) -> dict | None:
    """The SFT row of one teacher answer, or None (and a count saying why)."""
    from clauseloop.program.qa import category_prompt, format_passages

    if getattr(prediction, "gated", False):
        counts["gated"] += 1
        return None
    if getattr(prediction, "parse_failed", False):
        counts["parse_failed"] += 1
        return None
    score = score_example(example_from_question(question), prediction).f1
    if score < min_score:
        counts["below_threshold"] += 1
        return None
    quotes, outside = inside_shown(prediction.spans, prediction.passages, contract.text)
    counts["quotes_outside_passages"] += outside
    counts["kept"] += 1
    return render_row(
        task=category_prompt(question.category, None, program.config.max_description_chars),
        passages=format_passages(prediction.passages, contract.text),
        quotes=quotes, source=SOURCE, contract_id=contract.id, category=question.category,
        score=round(score, 4), question_id=question.id,
    )


def answer_questions(program: Any, questions: Sequence[ClauseQuestion], teacher_lm: Any, threads: int) -> list:
    """The program's predictions on the teacher LM; an unreachable teacher stops the build with a clear error."""
    import dspy

    from clauseloop.engine.reachability import UNREACHABLE, role_errors

    examples = [example_from_question(q) for q in questions]
    with role_errors({"teacher": teacher_lm}), dspy.context(lm=teacher_lm):
        results, failed, errors = program.batch(
            examples, num_threads=threads, return_failed_examples=True, max_errors=len(examples) + 1,
            disable_progress_bar=True, timeout=0,
        )
        unreachable = [e for e in errors if isinstance(e, UNREACHABLE)]
        if unreachable:
            raise unreachable[0]
    return results


def contract_trace_rows(
    program: Any, contract: Contract, questions: Sequence[ClauseQuestion], teacher_lm: Any, config: TraceConfig
) -> tuple[list[dict], dict[str, int]]:
    counts = dict.fromkeys(("examples", "kept", "gated", "parse_failed", "failed", "below_threshold",
                            "quotes_outside_passages"), 0)
    chosen = pick_questions(questions, config.questions_per_contract)
    counts["examples"] = len(chosen)
    rows = []
    for question, prediction in zip(chosen, answer_questions(program, chosen, teacher_lm, config.threads)):
        if prediction is None:
            counts["failed"] += 1
        elif (row := trace_row(program, contract, question, prediction, config.min_score, counts)) is not None:
            rows.append(row)
    return rows, counts


def build_trace_rows(
    dataset: SFTDataset,
    train: CuadDataset,
    program: Any,
    teacher_lm: Any,
    config: TraceConfig = TraceConfig(),
    on_contract: Callable[[str], None] | None = None,
) -> int:
    """Add the kept teacher traces of every train contract not done yet; returns rows written."""
    program.add_contracts(train.contracts)
    return build_per_contract(
        dataset, SOURCE, train.contracts,
        lambda cid: contract_trace_rows(program, train.contracts[cid], train.questions_for(cid), teacher_lm, config),
        on_contract,
    )
