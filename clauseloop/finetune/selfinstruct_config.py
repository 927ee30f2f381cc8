"""Settings of grounded self-instruct (:mod:`clauseloop.finetune.selfinstruct`), kept apart from it so the CLI
reads their defaults and help without importing DSPy."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SelfInstructConfig:
    """How the teacher's questions about gold clauses become SFT rows."""

    clauses_per_contract: int = field(
        default=8, metadata={"help": "Gold clauses per contract the teacher writes a question for (one per category "
                                     "first)."})
    none_share: float = field(default=0.2, metadata={"help": "Share of 'no clause' (NONE) rows among synthetic rows."})
    rouge_threshold: float = field(
        default=0.7, metadata={"help": "Drop a question whose ROUGE-L F with any kept question reaches this."})
    judge_threshold: float | None = field(
        default=None, metadata={"help": "Drop a question the judge scores below this (needs a judge LM)."})
    max_clause_chars: int = field(default=600, metadata={"help": "Most clause characters shown to the teacher."})
    min_clause_chars: int = field(
        default=40, metadata={"help": "Gold spans shorter than this (names, dates) are not used as clauses."})
    min_shown_chars: int = field(
        default=20, metadata={"help": "Characters of the clause the question's passages must show (round trip)."})
    max_question_chars: int = field(default=300, metadata={"help": "A longer teacher reply is not a question."})
    seed: int = field(default=0, metadata={"help": "Seed of the clause and NONE-row sampling."})
    teacher_max_tokens: int = field(default=64, metadata={"help": "Most tokens per teacher reply."})
    threads: int = field(default=8, metadata={"help": "Concurrent teacher requests (the local engine batches them)."})

    def __post_init__(self) -> None:
        if not 0.0 <= self.none_share < 1.0:
            raise ValueError(f"none_share must be in [0, 1), got {self.none_share}")
        if not 0.0 < self.rouge_threshold <= 1.0:
            raise ValueError(f"rouge_threshold must be in (0, 1], got {self.rouge_threshold}")
