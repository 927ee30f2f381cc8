"""The human-labelled seed: CUAD's gold annotations of train contracts as SFT rows in the student's prompt format.

For each answerable question the row shows what ``ContractQA`` would show (the category text and the passages its
retriever picks) and answers with the gold clauses *as they appear in those passages*: a gold span the passages
show only in part is quoted in part, one they do not show at all is not quoted — the student can only copy what
it sees. A question none of whose gold the passages show is skipped and counted (``gold_not_shown``): that is a
retrieval miss, and teaching the LM to answer from text it was not given would teach it to invent.

"No clause" rows come from the contract's unanswerable questions, in a configurable share of the rows. By default
only those the presence gate lets through are used: a question the gate stops never reaches the LM, so the
student's NONE has to be learned on the hard cases — passages that look like the clause but are not.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from clauseloop.data import ClauseQuestion, Contract, CuadDataset
from clauseloop.finetune.dataset import SFTDataset, build_per_contract
from clauseloop.finetune.rows import program_inputs, render_row, shown_part

SOURCE = "gold"


@dataclass(frozen=True)
class GoldRowsConfig:
    """How CUAD's gold annotations become SFT rows."""

    none_share: float = field(default=0.3, metadata={"help": "Share of 'no clause' (NONE) rows among gold rows."})
    none_from_gate: bool = field(
        default=True, metadata={"help": "Take NONE rows only from questions the presence gate lets through."}
    )
    min_quote_chars: int = field(
        default=20, metadata={"help": "A gold span showing fewer characters than this in the passages is not quoted."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the NONE-row sampling."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.none_share < 1.0:
            raise ValueError(f"none_share must be in [0, 1), got {self.none_share}")


def contract_rng(contract_id: str, seed: int) -> random.Random:
    """Per-contract randomness that does not depend on which contracts ran before (resumable builds)."""
    return random.Random(int(hashlib.sha256(f"{seed}:{contract_id}".encode()).hexdigest()[:16], 16))


def gold_quotes(contract: Contract, question: ClauseQuestion, windows, min_chars: int) -> list[str]:
    """The question's gold spans as the shown passages show them (in gold order, each once)."""
    quotes = [shown_part(contract, a.start, a.end, windows) for a in question.answers]
    return list(dict.fromkeys(q for q in quotes if len(q) >= min_chars))


def none_count(answerable_rows: int, share: float, rng: random.Random) -> int:
    """NONE rows for a contract with ``answerable_rows`` answer rows, so NONE rows make up ``share`` overall
    (stochastic rounding keeps the expected share exact across contracts)."""
    target = answerable_rows * share / (1.0 - share)
    return int(target) + (rng.random() < target - int(target))


def contract_gold_rows(
    program: Any, contract: Contract, questions: Sequence[ClauseQuestion], config: GoldRowsConfig
) -> tuple[list[dict], dict[str, int]]:
    """Gold rows of one contract and the counts of what was skipped."""
    counts = {"answerable": 0, "gold_not_shown": 0, "none_candidates": 0, "none_gated": 0}
    rows = []
    for question in (q for q in questions if q.answerable):
        counts["answerable"] += 1
        task, passages, windows = program_inputs(program, contract, question.category, None)
        quotes = gold_quotes(contract, question, windows, config.min_quote_chars)
        if not quotes:
            counts["gold_not_shown"] += 1
            continue
        rows.append(_row(contract, question, task, passages, quotes))
    candidates = [q for q in questions if not q.answerable]
    counts["none_candidates"] = len(candidates)
    if config.none_from_gate and config.none_share > 0:
        gate = program._gate()
        allowed = [q for q in candidates if gate.allows(contract, q.category)]
        counts["none_gated"] = len(candidates) - len(allowed)
        candidates = allowed
    rng = contract_rng(contract.id, config.seed)
    rng.shuffle(candidates)
    for question in candidates[: none_count(len(rows), config.none_share, rng)]:
        task, passages, _ = program_inputs(program, contract, question.category, None)
        rows.append(_row(contract, question, task, passages, []))
    return rows, counts


def _row(contract: Contract, question: ClauseQuestion, task: str, passages: str, quotes: list[str]) -> dict:
    return render_row(
        task=task, passages=passages, quotes=quotes, source=SOURCE, contract_id=contract.id,
        category=question.category, score=1.0, question_id=question.id,
    )


def build_gold_rows(
    dataset: SFTDataset,
    train: CuadDataset,
    program: Any,
    config: GoldRowsConfig = GoldRowsConfig(),
    on_contract: Callable[[str], None] | None = None,
) -> int:
    """Add the gold rows of every train contract not done yet; returns rows written. ``program`` is the
    ``ContractQA`` whose retrieval picks the passages; ``on_contract`` is called after each contract (progress)."""
    return build_per_contract(
        dataset, SOURCE, train.contracts,
        lambda cid: contract_gold_rows(program, train.contracts[cid], train.questions_for(cid), config), on_contract,
    )
