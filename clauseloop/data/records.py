"""Typed records for contracts and clause questions, and the dataset that holds them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A piece of contract text and where it starts; ``contract.text[start:end] == text``."""

    text: str
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True)
class Contract:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class ClauseQuestion:
    """One CUAD question: which parts of ``contract_id`` are about ``category`` (``answers`` may be empty)."""

    id: str
    contract_id: str
    category: str
    question: str
    description: str
    answers: tuple[Span, ...] = ()
    is_impossible: bool = False

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class CuadDataset:
    """Contracts by id plus their questions, in file order. ``source`` says where they were read from."""

    contracts: dict[str, Contract]
    questions: list[ClauseQuestion]
    source: str = ""
    skipped: list[str] = field(default_factory=list)

    def questions_for(self, contract_id: str) -> list[ClauseQuestion]:
        return [q for q in self.questions if q.contract_id == contract_id]

    def subset(self, contract_ids: set[str] | list[str]) -> "CuadDataset":
        """The dataset restricted to some contracts (and their questions), order kept."""
        wanted = set(contract_ids)
        return CuadDataset(
            contracts={cid: c for cid, c in self.contracts.items() if cid in wanted},
            questions=[q for q in self.questions if q.contract_id in wanted],
            source=self.source,
        )

    def fingerprint(self) -> str:
        """A content hash of contracts and questions: the manifest of every artifact built from this data."""
        digest = hashlib.sha256()
        for cid in sorted(self.contracts):
            digest.update(cid.encode() + b"\0" + self.contracts[cid].text.encode() + b"\0")
        for q in sorted(self.questions, key=lambda q: q.id):
            spans = [(a.start, a.text) for a in q.answers]
            digest.update(json.dumps([q.id, q.category, spans, q.is_impossible]).encode())
        return digest.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.questions)
