"""Combining ranked lists: weighted reciprocal rank fusion, a lead (position) prior, and overlap suppression.

Reciprocal rank fusion (Cormack et al., 2009) adds ``weight / (k + rank)`` over the lists a passage appears in;
it needs no score calibration between BM25 and cosine, which differ in scale from contract to contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class FusionConfig:
    """How dense, lexical and position evidence are combined (search-time: changing it needs no rebuild)."""

    # Tuned on the train split: contract language is formulaic, so BM25 carries three times the dense vote.
    rrf_k: float = 30.0
    dense_weight: float = 0.5
    lexical_weight: float = 1.5
    lead_weight: float = 3.0  # multiplied by the query's own lead weight (0 for most categories)
    # Learned category models (Query.learned). Chosen on 46 held-out TRAIN contracts, models fitted without them
    # (best recall@5 + recall@10 of a 3 x 3 x 3 grid with max_overlap, bench/results/retrieval-fusion.md; the grid
    # spans about 2 points): the fitted term weights are the strongest single ranking, so they outvote the
    # hand-written lists.
    learned_lexical_weight: float = 5.0
    learned_dense_weight: float = 3.0
    # The passage classifier (retrieval.classifier), when the fit has one. It replaces the probe: in an exploratory
    # grid on the same held-out contracts the 8 best settings all left the probe out, and the best had classifier 5
    # with the term weight above (+1.1 / +0.9 @5 / @10 over no classifier: bench/results/retrieval-classifier.md,
    # where other weights score the same within noise).
    learned_classifier_weight: float = 5.0
    # Skip a passage sharing more than this share of its text with a better-ranked one. Consecutive passages share
    # up to half their text (ChunkConfig.overlap_chars), so 0.5 keeps neighbours that add at least half new text;
    # chosen with the learned weights on that grid (0.4 / 0.5 / 0.6).
    max_overlap: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)


def ranks_of(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each item by descending score (ties keep input order)."""
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[np.argsort(-np.asarray(scores), kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def reciprocal_rank_fusion(
    score_lists: Sequence[np.ndarray], weights: Sequence[float], k: float = 60.0
) -> np.ndarray:
    """Fused score per item: ``sum_i weight_i / (k + rank_i)`` (lists with weight 0 are skipped)."""
    if not score_lists:
        raise ValueError("reciprocal_rank_fusion needs at least one score list")
    fused = np.zeros(len(score_lists[0]), dtype=np.float64)
    for scores, weight in zip(score_lists, weights):
        if weight:
            fused += weight / (k + ranks_of(scores))
    return fused


def lead_prior(count: int) -> np.ndarray:
    """A score list that ranks passages by their position: the first passage of a contract ranks first."""
    return -np.arange(count, dtype=np.float64)


def pick_diverse(
    order: Sequence[int], starts: Sequence[int], ends: Sequence[int], k: int, max_overlap: float
) -> list[int]:
    """The first ``k`` items of ``order`` that do not repeat better-ranked text (overlap share ≤ ``max_overlap``).

    With overlapping chunks, a clause often tops the list twice (in two neighbouring passages); the second copy
    wastes a slot the QA program could use for another clause.
    """
    chosen: list[int] = []
    for item in order:
        length = max(ends[item] - starts[item], 1)
        if all(min(ends[item], ends[c]) - max(starts[item], starts[c]) <= max_overlap * length for c in chosen):
            chosen.append(int(item))
            if len(chosen) == k:
                break
    return chosen
