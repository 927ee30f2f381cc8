"""Honest baselines in the same machinery as the program: what retrieval alone gets you.

``RetrievalBaseline`` answers with the top passage of the contract (the program's own hybrid retrieval) when its
MiniLM cosine similarity to the query clears a threshold, with that similarity as the confidence (fused retrieval
scores are ranks, not similarities, so the cosine is computed here). No LM is called. It is the floor every program
must beat, and its AUPR shows how much of the score retrieval already explains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import dspy

from clauseloop.data import Contract
from clauseloop.program.qa import search_query
from clauseloop.program.types import PredictedSpan
from clauseloop.retrieval.embedding import Embedder


@dataclass(frozen=True)
class RetrievalBaselineConfig:
    threshold: float = 0.3  # minimum cosine similarity (MiniLM) for the top passage to count as an answer
    embedder: str = "minilm-l6"


class RetrievalBaseline(dspy.Module):
    """Top passage above a similarity threshold; confidence = its cosine similarity."""

    def __init__(self, contracts: Mapping[str, Contract] | None = None,
                 config: RetrievalBaselineConfig = RetrievalBaselineConfig()):
        super().__init__()
        self.contracts = dict(contracts or {})
        self.config = config
        self.embedder = Embedder(config.embedder)  # unit vectors; one encode at a time per process

    def forward(self, contract_id: str | None = None, category: str | None = None, question: str | None = None,
                contract: Contract | None = None) -> dspy.Prediction:
        from clauseloop.retrieval import as_query, retrieve_in_contract

        contract = contract or self.contracts[contract_id]
        query = as_query(search_query(category, question))
        hits = retrieve_in_contract(contract, query, 1)
        spans = []
        if hits:
            passage = hits[0].passage
            query_vector, passage_vector = self.embedder.encode([query.text, passage.text])
            similarity = float(query_vector @ passage_vector)
            if similarity >= self.config.threshold:
                spans.append(PredictedSpan(passage.text, passage.start, passage.end, round(min(similarity, 1.0), 6)))
        return dspy.Prediction(spans=spans, passages=[hit.passage for hit in hits], dropped=0)
