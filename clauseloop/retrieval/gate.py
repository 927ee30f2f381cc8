"""The presence gate: decide, before any LM call, that a contract has no clause of a category.

About two thirds of CUAD's (contract, category) pairs have no clause, and on a CPU every LM call costs seconds of
prefill. A category's learned term model (:mod:`clauseloop.retrieval.learned`) scores each passage; a contract's
*presence score* is its best passage's score. Below the category's threshold the QA program answers "no clause"
without asking the LM.

Thresholds come from **cross-fitted** scores (:func:`cross_fit_presence`): the training contracts are split
into folds, term models are fitted on all folds but one and score the contracts of the held-out fold, so every
training contract is scored by a model that never saw it, as an unseen contract will be. The artifact keeps, per
category, the held-out scores of the contracts that *do* have the clause; at run time the threshold is the highest
score that still lets ``recall`` of them through (``QAConfig.gate_recall``, default 0.97: a speed / recall knob).
The shipped model is fitted on all folds (the same L2 per passage, hence the same score scale). What the gate
keeps on unseen contracts is measured on the dev split by ``bench/qa.py``.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Sequence

import numpy as np

from clauseloop.data.records import Contract
from clauseloop.retrieval.chunking import ChunkConfig, chunk_contract
from clauseloop.retrieval.index import contract_hash
from clauseloop.retrieval.learned import LearnedQueries, passage_term_sets, recall_threshold

if TYPE_CHECKING:
    from clauseloop.retrieval.fitting import FitConfig, Labelled

logger = logging.getLogger(__name__)


def presence_scores(term_sets: Sequence[set[str]], weights: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per category, the best passage's summed term weights (``-inf`` for a contract without passages).

    The same sums as ``CategoryModel.lexical_scores``, for every category at once as one matrix: cross-fitting
    scores every (training contract, category) pair, where a dict lookup per term and category is too slow.
    """
    categories = sorted(weights)
    vocabulary = sorted({t for terms in weights.values() for t in terms})
    column = {t: n for n, t in enumerate(vocabulary)}
    matrix = np.zeros((len(vocabulary) + 1, len(categories)))  # the last row: terms no model knows (weight 0)
    for j, category in enumerate(categories):
        for term, weight in weights[category].items():
            matrix[column[term], j] = weight
    best = np.full(len(categories), -np.inf)
    for terms in term_sets:
        rows = [column.get(t, len(vocabulary)) for t in terms]
        best = np.maximum(best, matrix[rows].sum(axis=0) if rows else 0.0)
    return dict(zip(categories, best.tolist()))


def cross_fit_presence(
    labelled: "Labelled", terms: dict[str, dict[str, float]], config: "FitConfig"
) -> tuple[dict[str, np.ndarray], dict]:
    """Per category, the cross-fitted presence scores of the training contracts that have the clause (ascending),
    and the share of the others each recall would gate (see the module docstring).

    ``terms`` is the full fit's term weights: each fold re-fits the weights of the same kept terms without its
    held-out contracts (choosing the terms again per fold would cost a whole-vocabulary fit per category and
    fold; the choice of terms is the one thing the held-out contracts did inform).
    """
    from clauseloop.retrieval.fitting import fit_on_terms

    contracts = sorted(labelled.ranges)
    random.Random(config.seed).shuffle(contracts)
    folds = [contracts[n :: config.gate_folds] for n in range(config.gate_folds)]
    held_out: dict[str, dict[str, float]] = {}  # contract -> category -> presence score
    for number, fold in enumerate(folds, start=1):
        logger.info("gate fold %d/%d: re-fitting term weights without %d contracts", number, len(folds), len(fold))
        rest = labelled.subset(set(contracts) - set(fold))
        weights = {c: fit_on_terms(rest, c, sorted(terms[c]), config) for c in sorted(terms) if c in rest.positives}
        for cid in fold:
            held_out[cid] = presence_scores(labelled.contract_term_sets(cid), weights)
    scores, without = {}, {}
    for category, answering in sorted(labelled.positives.items()):
        scored = [(cid, s[category]) for cid, s in held_out.items() if category in s]
        positive = sorted(score for cid, score in scored if cid in answering)
        if len(positive) >= 2:  # fewer: no basis for a threshold, the category is never gated
            scores[category] = np.array(positive, dtype=np.float32)
            without[category] = [score for cid, score in scored if cid not in answering]
    stats = {"folds": config.gate_folds, "cross_fitted": {
        f"recall {recall}": gate_statistics(scores, without, recall) for recall in REPORTED_RECALLS}}
    logger.info("gate: %s", stats)
    return scores, stats


REPORTED_RECALLS = (0.95, 0.97, 0.99)


def gate_statistics(scores: dict[str, np.ndarray], without: dict[str, list[float]], recall: float) -> dict:
    """Held-out share of answerable pairs kept and of the other pairs gated, with thresholds for ``recall``."""
    kept, gated = [], []
    for category, positive in scores.items():
        threshold = recall_threshold(positive, recall)
        kept.extend(positive >= threshold)
        gated.extend(score < threshold for score in without[category])
    return {"kept_with_clause": round(float(np.mean(kept)), 4) if kept else None,
            "gated_without_clause": round(float(np.mean(gated)), 4) if gated else None}


class PresenceGate:
    """Runtime side: a contract's presence score per category against the learned thresholds.

    Contracts are chunked as the learned models were fitted (their manifest's chunking); the passage term sets of
    the last ``max_contracts`` contracts are cached, since a review asks 41 categories of one contract at once.
    """

    def __init__(self, learned: LearnedQueries | None, recall: float = 0.97, *, max_contracts: int = 32):
        if not 0.0 <= recall <= 1.0:
            raise ValueError(f"gate recall must be in [0, 1], got {recall}; 1.0 keeps every held-out clause")
        self.learned, self.recall = learned, recall
        chunking = (learned.manifest.get("chunking") if learned is not None else None) or {}
        self.chunking = ChunkConfig(**chunking)
        self.max_contracts = max_contracts
        self._term_sets: OrderedDict[str, list[set[str]]] = OrderedDict()  # by contract content hash
        self._lock = threading.Lock()

    def threshold(self, category: str) -> float | None:
        model = self.learned.get(category) if self.learned is not None else None
        return model.gate_threshold(self.recall) if model is not None else None

    def score(self, contract: Contract, category: str) -> float | None:
        """The contract's presence score for ``category``, or None when the category has no gate."""
        return None if self.threshold(category) is None else self._best_passage_score(contract, category)

    def allows(self, contract: Contract, category: str) -> bool:
        """False only when the category has a threshold and the contract scores below it."""
        threshold = self.threshold(category)
        return threshold is None or self._best_passage_score(contract, category) >= threshold

    def _best_passage_score(self, contract: Contract, category: str) -> float:
        scores = self.learned.get(category).lexical_scores(self._contract_terms(contract))
        return float(scores.max(initial=-np.inf))

    def _contract_terms(self, contract: Contract) -> list[set[str]]:
        """Computed under the lock: a review asks from 16 threads at once, and stemming holds the GIL anyway,
        so computing outside it would only repeat the same work 16 times."""
        key = contract_hash(contract)
        with self._lock:
            if key not in self._term_sets:
                self._term_sets[key] = passage_term_sets(chunk_contract(contract, self.chunking))
                while len(self._term_sets) > self.max_contracts:
                    self._term_sets.popitem(last=False)
            self._term_sets.move_to_end(key)
            return self._term_sets[key]


_DEFAULT: dict[tuple[int, float], PresenceGate] = {}


def default_gate(recall: float = 0.97) -> PresenceGate:
    """The gate of the default learned queries (one per loaded artifact and recall, shared by program copies)."""
    from clauseloop.retrieval.learned import default_learned

    learned = default_learned()
    key = (id(learned), recall)
    if key not in _DEFAULT:
        _DEFAULT[key] = PresenceGate(learned, recall)
    return _DEFAULT[key]
