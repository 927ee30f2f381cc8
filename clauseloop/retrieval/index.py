"""The passage index: faiss (cosine) over embeddings plus BM25, searched dense, lexical or hybrid.

Passages of one contract are stored contiguously, so "search within this contract" is a range: faiss restricts to
it with an ID selector and BM25 scores are sliced. Building reuses the embeddings of unchanged contracts from a
previous index (same embedder and chunking), so adding, changing or removing a few contracts re-embeds only those.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from clauseloop.data.records import Contract
from clauseloop.retrieval.chunking import ChunkConfig, Passage, chunk_contract
from clauseloop.retrieval.embedding import DEFAULT_EMBEDDER, Embedder
from clauseloop.retrieval.fusion import FusionConfig, pick_diverse, reciprocal_rank_fusion
from clauseloop.retrieval.lexical import LexicalConfig, LexicalIndex
from clauseloop.retrieval.queries import Query, as_query

logger = logging.getLogger(__name__)

MODES = ("dense", "lexical", "hybrid")


@dataclass(frozen=True)
class IndexConfig:
    """What an index is built from. ``embedder`` and ``chunking`` fix its identity; the rest is search-time."""

    embedder: str = DEFAULT_EMBEDDER
    chunking: ChunkConfig = field(default_factory=ChunkConfig)
    lexical: LexicalConfig = field(default_factory=LexicalConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    mode: str = "hybrid"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown retrieval mode {self.mode!r}; choose one of {', '.join(MODES)}")

    def identity(self) -> dict:
        """The part that decides whether stored embeddings can be reused."""
        return {"embedder": self.embedder, "chunking": self.chunking.to_dict()}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "IndexConfig":
        return cls(
            embedder=data["embedder"],
            chunking=ChunkConfig(**data["chunking"]),
            lexical=LexicalConfig(**data.get("lexical", {})),
            fusion=FusionConfig(**data.get("fusion", {})),
            mode=data.get("mode", "hybrid"),
        )


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its fused score (higher is better)."""

    passage: Passage
    score: float

    @property
    def contract_id(self) -> str:
        return self.passage.contract_id

    def to_dict(self) -> dict:
        return {**self.passage.to_dict(), "score": self.score}


def contract_hash(contract: Contract) -> str:
    """Content hash of a contract: a changed text means its passages must be re-embedded."""
    return hashlib.sha256(f"{contract.id}\0{contract.text}".encode()).hexdigest()[:32]


@dataclass
class BuildStats:
    contracts: int = 0
    embedded_contracts: int = 0
    reused_contracts: int = 0
    removed_contracts: int = 0
    passages: int = 0
    embedded_passages: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0  # the model's share of ``seconds``; the rest is chunking and bookkeeping


class PassageIndex:
    """Passages, their embeddings and per-contract hashes; faiss and BM25 are built lazily from them."""

    def __init__(self, config: IndexConfig, passages: list[Passage], embeddings: np.ndarray, hashes: dict[str, str]):
        if len(passages) != len(embeddings):
            raise ValueError(f"{len(passages)} passages but {len(embeddings)} embeddings")
        self.config, self.passages, self.embeddings, self.hashes = config, passages, embeddings, hashes
        self.ranges: dict[str, tuple[int, int]] = {}
        for row, passage in enumerate(passages):
            start, _ = self.ranges.get(passage.contract_id, (row, row))
            self.ranges[passage.contract_id] = (start, row + 1)
        # Offsets of different contracts must never count as overlapping: shift each contract far apart.
        shift = {cid: n * 10**12 for n, cid in enumerate(self.ranges)}
        self._starts = np.array([p.start + shift[p.contract_id] for p in passages], dtype=np.int64)
        self._ends = self._starts + np.array([p.end - p.start for p in passages], dtype=np.int64)
        self.embedder: Embedder | None = None
        self._faiss = None
        self._lexical: LexicalIndex | None = None
        self._term_sets: list[set[str]] | None = None
        self._classifier_vectors = None
        self.build_stats = BuildStats(contracts=len(hashes), passages=len(passages))

    # ---- building -------------------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        contracts: Iterable[Contract],
        config: IndexConfig = IndexConfig(),
        *,
        embedder: Embedder | None = None,
        previous: "PassageIndex | None" = None,
        progress: bool = False,
    ) -> "PassageIndex":
        """Chunk and embed ``contracts``; contracts unchanged since ``previous`` keep their embeddings."""
        started = time.perf_counter()
        contracts = list(contracts)
        embedder = embedder or Embedder(config.embedder)
        if embedder.name != config.embedder:
            raise ValueError(f"embedder {embedder.name!r} does not match the index config ({config.embedder!r})")
        reusable = previous if previous is not None and previous.config.identity() == config.identity() else None
        pieces, to_embed = [], []
        for contract in contracts:
            digest = contract_hash(contract)
            if reusable is not None and reusable.hashes.get(contract.id) == digest:
                start, end = reusable.ranges.get(contract.id, (0, 0))
                pieces.append((contract.id, digest, reusable.passages[start:end], reusable.embeddings[start:end]))
            else:
                pieces.append((contract.id, digest, chunk_contract(contract, config.chunking), None))
                to_embed.extend(pieces[-1][2])
        encoding_before = embedder.seconds_encoding
        fresh = embedder.encode([p.text for p in to_embed], progress=progress)
        index = cls._assemble(config, pieces, fresh, embedder.dim)
        index.embedder = embedder
        kept = {cid for cid, *_ in pieces}
        index.build_stats = BuildStats(
            contracts=len(pieces),
            embedded_contracts=sum(vectors is None for *_, vectors in pieces),
            reused_contracts=sum(vectors is not None for *_, vectors in pieces),
            removed_contracts=len(set(previous.hashes) - kept) if previous is not None else 0,
            passages=len(index.passages),
            embedded_passages=len(to_embed),
            seconds=time.perf_counter() - started,
            encode_seconds=embedder.seconds_encoding - encoding_before,
        )
        logger.info("index built: %s", index.build_stats)
        return index

    @classmethod
    def _assemble(cls, config: IndexConfig, pieces: list, fresh: np.ndarray, dim: int) -> "PassageIndex":
        passages, blocks, hashes, cursor = [], [], {}, 0
        for contract_id, digest, contract_passages, vectors in pieces:
            if contract_id in hashes:
                raise ValueError(f"contract id {contract_id!r} appears twice; contract ids must be unique")
            hashes[contract_id] = digest
            if vectors is None:
                vectors, cursor = fresh[cursor : cursor + len(contract_passages)], cursor + len(contract_passages)
            passages.extend(contract_passages)
            blocks.append(vectors)
        embeddings = np.concatenate(blocks).astype(np.float32) if blocks else np.zeros((0, dim), np.float32)
        return cls(config, passages, np.ascontiguousarray(embeddings), hashes)

    # ---- searching ------------------------------------------------------------------------------------------
    @property
    def faiss_index(self):
        if self._faiss is None:
            import faiss

            self._faiss = faiss.IndexFlatIP(self.embeddings.shape[1])  # inner product of unit vectors = cosine
            self._faiss.add(self.embeddings)
        return self._faiss

    @property
    def lexical_index(self) -> LexicalIndex:
        if self._lexical is None:
            self._lexical = LexicalIndex([p.text for p in self.passages], self.config.lexical)
        return self._lexical

    def _embedder(self) -> Embedder:
        if self.embedder is None:
            self.embedder = Embedder(self.config.embedder)
        return self.embedder

    def search(
        self, query: str | Query, k: int = 5, *, contract_id: str | None = None, mode: str | None = None
    ) -> list[Hit]:
        """The top-``k`` passages for ``query``, within one contract if ``contract_id`` is given."""
        mode = mode or self.config.mode
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        query = as_query(query)
        if contract_id is not None and contract_id not in self.ranges:
            raise KeyError(f"contract {contract_id!r} is not in this index; build the index with it first")
        start, end = self.ranges[contract_id] if contract_id is not None else (0, len(self.passages))
        if end <= start or k < 1:
            return []
        rows, fused = self._fused_scores(query, start, end, mode)
        order = rows[np.argsort(-fused, kind="stable")]
        chosen = pick_diverse(order, self._starts, self._ends, k, self.config.fusion.max_overlap)
        score_of = dict(zip(rows.tolist(), fused.tolist()))
        return [Hit(self.passages[row], float(score_of[row])) for row in chosen]

    def _fused_scores(self, query: Query, start: int, end: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Candidate rows and their fused scores (all rows of the range: contracts have a few hundred passages)."""
        fusion = self.config.fusion
        rows = np.arange(start, end)
        lists, weights = [], []
        if mode in ("dense", "hybrid"):
            lists.append(self._dense_scores(query, start, end))
            weights.append(fusion.dense_weight if mode == "hybrid" else 1.0)
        if mode in ("lexical", "hybrid"):
            lists.append(self.lexical_index.scores(query.lexical)[start:end])
            weights.append(fusion.lexical_weight if mode == "hybrid" else 1.0)
        if query.learned is not None:
            self._add_learned(query, start, end, mode, lists, weights)
        if query.lead_weight and fusion.lead_weight:
            positions = np.array([self.passages[r].position for r in rows])
            lists.append(-positions.astype(np.float64))
            weights.append(fusion.lead_weight * query.lead_weight)
        return rows, reciprocal_rank_fusion(lists, weights, fusion.rrf_k)

    def _add_learned(self, query: Query, start: int, end: int, mode: str, lists: list, weights: list) -> None:
        """Append the learned model's lexical list and its classifier (or else probe) list, each on the side ``mode``
        searches."""
        fusion, model = self.config.fusion, query.learned
        if mode in ("lexical", "hybrid") and model.terms and fusion.learned_lexical_weight:
            lists.append(model.lexical_scores(self.term_sets[start:end]))
            weights.append(fusion.learned_lexical_weight)
        usable = model.dense is not None and model.dense.shape == self.embeddings.shape[1:]
        if usable and model.embedder not in (None, self.config.embedder):
            usable = False  # a probe fitted over another model's embeddings would rank at random
            logger.debug("learned probe of %r is for %s, not %s: skipped", model.category, model.embedder,
                         self.config.embedder)
        if mode in ("dense", "hybrid") and model.classifier is not None and fusion.learned_classifier_weight:
            lists.append(self.classifier_vectors.vectors(model.classifier_embedder, start, end) @ model.classifier)
            weights.append(fusion.learned_classifier_weight)
        elif mode in ("dense", "hybrid") and usable and fusion.learned_dense_weight:
            lists.append(model.dense_scores(self.embeddings[start:end]))
            weights.append(fusion.learned_dense_weight)

    @property
    def classifier_vectors(self):
        """The learned passage classifier's embeddings of this index's passages, per contract on first use."""
        if self._classifier_vectors is None:
            from clauseloop.retrieval.classifier import ClassifierVectors

            self._classifier_vectors = ClassifierVectors(self.passages, self.ranges)
        return self._classifier_vectors

    @property
    def term_sets(self) -> list[set[str]]:
        """Per passage, the word, word-pair and heading-word set learned lexical models score (computed once, on
        first use)."""
        if self._term_sets is None:
            from clauseloop.retrieval.learned import passage_term_sets

            self._term_sets = passage_term_sets(self.passages)
        return self._term_sets

    def _dense_scores(self, query: Query, start: int, end: int) -> np.ndarray:
        import faiss

        vector = self._embedder().encode_query(query.text)[None, :]
        params = faiss.SearchParameters(sel=faiss.IDSelectorRange(start, end))
        scores, ids = self.faiss_index.search(vector, end - start, params=params)
        dense = np.full(end - start, -np.inf, dtype=np.float32)
        found = ids[0] >= 0
        dense[ids[0][found] - start] = scores[0][found]
        return dense

    def contract_ids(self) -> list[str]:
        return list(self.ranges)

    def __len__(self) -> int:
        return len(self.passages)

