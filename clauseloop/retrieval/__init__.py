"""Retrieval over contracts: offset-preserving chunks, dense/lexical/hybrid indexes, a DSPy retriever.

Names are imported lazily (``from clauseloop.retrieval import PassageIndex`` loads only what it needs), so
``import clauseloop`` stays cheap; faiss, bm25s, sentence-transformers and dspy load on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ChunkConfig": "chunking", "Passage": "chunking", "chunk_contract": "chunking", "chunk_contracts": "chunking",
    "Embedder": "embedding",
    "CATEGORY_HINTS": "expansions", "CategoryHint": "expansions",
    "FusionConfig": "fusion", "reciprocal_rank_fusion": "fusion",
    "LexicalConfig": "lexical", "LexicalIndex": "lexical",
    "Hit": "index", "IndexConfig": "index", "PassageIndex": "index", "MODES": "index", "contract_hash": "index",
    "CategoryQueryBuilder": "queries", "LearnedQueryBuilder": "queries", "Query": "queries", "QueryBuilder": "queries",
    "CategoryModel": "learned", "LearnedQueries": "learned", "LearnedQueriesError": "learned",
    "default_learned": "learned", "load_learned": "learned", "save_learned": "learned",
    "FitConfig": "fitting", "fit_learned_queries": "fitting", "training_passages": "fitting",
    "description_query": "queries", "as_query": "queries",
    "IndexStoreError": "store", "build_index_dir": "store", "load_index": "store", "save_index": "store",
    "RecallReport": "evaluate", "covered_share": "evaluate", "evaluate_index": "evaluate", "span_recall": "evaluate",
    "ContractIndexCache": "retriever", "ContractRetriever": "retriever", "category_query": "retriever",
    "retrieve_in_contract": "retriever",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
