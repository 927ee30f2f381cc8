"""Retrieval over contracts: offset-preserving chunks, dense/lexical/hybrid indexes, a DSPy retriever."""
