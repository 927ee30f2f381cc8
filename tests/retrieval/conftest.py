"""Fixtures for retrieval tests: a tiny deterministic encoder for store logic, the real MiniLM for the rest."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from clauseloop.data import Contract


class BagOfWordsModel:
    """A deterministic stand-in for SentenceTransformer.encode (hashed bag of words), used where only the index
    bookkeeping is under test; it records every text it is asked to encode."""

    dim = 64

    def __init__(self):
        self.seen: list[str] = []

    def get_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False):
        self.seen.extend(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                vectors[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-9)


@pytest.fixture
def bow_embedder():
    from clauseloop.retrieval.embedding import Embedder

    return Embedder("bag-of-words-test", model=BagOfWordsModel())


@pytest.fixture(scope="session")
def minilm():
    from clauseloop.retrieval.embedding import Embedder

    return Embedder("minilm-l6")


@pytest.fixture(scope="session")
def demo_index(demo_dataset, minilm):
    from clauseloop.retrieval.index import PassageIndex

    return PassageIndex.build(demo_dataset.contracts.values(), embedder=minilm)


def make_contract(cid: str, clauses: list[str]) -> Contract:
    return Contract(id=cid, title=cid, text="\n\n".join(clauses))


@pytest.fixture
def small_contracts() -> list[Contract]:
    base = [
        "This Agreement shall be governed by the laws of the State of New York.",
        "Neither party may assign this Agreement without the prior written consent of the other party.",
        "Licensee shall pay a royalty of five percent of Net Sales.",
    ]
    return [make_contract(f"C{n}", [f"AGREEMENT NUMBER {n}."] + base * 3) for n in range(3)]
