"""What the QA program calls: a ``dspy.Retrieve``-style module and an on-the-fly search over any one contract.

* :class:`ContractRetriever` wraps a built :class:`PassageIndex` (or its directory). Called with a query (text or
  :class:`Query`), ``k`` and optionally ``contract_id``, it returns a ``dspy.Prediction`` whose ``passages`` are
  the texts (as ``dspy.Retrieve`` does) and whose ``hits`` carry contract id, offsets and score.
* :func:`retrieve_in_contract` searches a :class:`Contract` that need not be in any index: it builds an in-memory
  index for that contract (about 2.5 s of embedding for a median contract) and caches it by content hash.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import dspy

from clauseloop.data.records import Contract
from clauseloop.retrieval.embedding import Embedder
from clauseloop.retrieval.index import Hit, IndexConfig, PassageIndex, contract_hash
from clauseloop.retrieval.queries import LearnedQueryBuilder, Query, QueryBuilder


class ContractRetriever(dspy.Retrieve):
    """``dspy.Retrieve`` over a passage index, restricted to one contract when ``contract_id`` is given."""

    def __init__(self, index: PassageIndex | str | Path, k: int = 5, *, mode: str | None = None, callbacks=None):
        super().__init__(k=k, callbacks=callbacks)
        if not isinstance(index, PassageIndex):
            from clauseloop.retrieval.store import load_index

            index = load_index(index)
        self.index = index
        self.mode = mode

    def forward(
        self, query: str | Query, k: int | None = None, contract_id: str | None = None, **kwargs
    ) -> dspy.Prediction:
        hits = self.index.search(query, k if k is not None else self.k, contract_id=contract_id, mode=self.mode)
        return hits_prediction(hits)


def hits_prediction(hits: list[Hit]) -> dspy.Prediction:
    return dspy.Prediction(
        passages=[hit.passage.text for hit in hits],
        hits=[hit.to_dict() for hit in hits],
        scores=[hit.score for hit in hits],
    )


class ContractIndexCache:
    """Per-contract in-memory indexes, least recently used dropped first, keyed by contract content hash."""

    def __init__(
        self, config: IndexConfig = IndexConfig(), *, max_contracts: int = 32, embedder: Embedder | None = None
    ):
        self.config = config
        self.max_contracts = max_contracts
        self.embedder = embedder
        self._indexes: OrderedDict[str, PassageIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}  # one lock per contract being indexed

    def index_for(self, contract: Contract) -> PassageIndex:
        """The contract's index, built on first use. Concurrent callers for one contract (a review asks 41
        categories at once) wait for a single build instead of each embedding the same contract."""
        key = contract_hash(contract)
        with self._lock:
            if (index := self._cached(key)) is not None:
                return index
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                if (index := self._cached(key)) is not None:
                    return index
            self.embedder = self.embedder or Embedder(self.config.embedder)
            index = PassageIndex.build([contract], self.config, embedder=self.embedder)
            with self._lock:
                self._indexes[key] = index
                self._building.pop(key, None)
                while len(self._indexes) > self.max_contracts:
                    self._indexes.popitem(last=False)
        return index

    def _cached(self, key: str) -> PassageIndex | None:
        if key in self._indexes:
            self._indexes.move_to_end(key)
            return self._indexes[key]
        return None

    def __len__(self) -> int:
        return len(self._indexes)


_DEFAULT_CACHE: ContractIndexCache | None = None


def default_cache() -> ContractIndexCache:
    """One process-wide cache, so repeated questions about a contract embed it once."""
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None:
        _DEFAULT_CACHE = ContractIndexCache()
    return _DEFAULT_CACHE


def retrieve_in_contract(
    contract: Contract,
    query: str | Query,
    k: int = 5,
    *,
    mode: str | None = None,
    cache: ContractIndexCache | None = None,
) -> list[Hit]:
    """The top-``k`` passages of ``contract`` for ``query`` (indexed on the fly; cached by content hash)."""
    index = (cache if cache is not None else default_cache()).index_for(contract)
    return index.search(query, k, contract_id=contract.id, mode=mode)


def category_query(category: str, extra_terms: tuple[str, ...] = (), builder: QueryBuilder | None = None) -> Query:
    """The query the QA program should use for a CUAD category: the hand-written hints plus the learned model of
    the category (the shipped fit, or ``$CLAUSELOOP_LEARNED_QUERIES``), unless ``builder`` is given."""
    return (builder or LearnedQueryBuilder())(category, extra_terms)
