"""The per-contract index cache: concurrent questions about one contract embed it once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from clauseloop.retrieval.embedding import Embedder
from clauseloop.retrieval.index import IndexConfig
from clauseloop.retrieval.retriever import ContractIndexCache, retrieve_in_contract
from tests.retrieval.conftest import BagOfWordsModel


class SlowBagOfWords(BagOfWordsModel):
    """Slow enough that every thread arrives while the first build is still running."""

    def encode(self, texts, **kwargs):
        time.sleep(0.2)
        return super().encode(texts, **kwargs)


def test_concurrent_questions_about_one_contract_build_its_index_once(small_contracts):
    embedder = Embedder("bag-of-words-test", model=SlowBagOfWords())
    cache = ContractIndexCache(IndexConfig(embedder="bag-of-words-test", mode="lexical"), embedder=embedder)
    contract = small_contracts[0]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: retrieve_in_contract(contract, "governing law", 2, cache=cache), range(8)))
    passages = len(cache.index_for(contract).passages)
    assert embedder.texts_encoded == passages  # one build, not eight
    assert all([h.passage for h in hits] == [h.passage for h in results[0]] for hits in results)
    other = small_contracts[1]
    retrieve_in_contract(other, "governing law", 2, cache=cache)
    assert len(cache) == 2 and embedder.texts_encoded > passages
