"""Sentence embeddings for passages and queries (the packaged MiniLM by default), unit-normalized for cosine."""

from __future__ import annotations

import logging
import threading
import time
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "minilm-l6"
# One encode at a time per process: each call already uses every core (torch threads), and the QA program asks
# from 16 threads at once (on 2 cores, 16 concurrent encodes drove the load average to 25 and crawled).
_ENCODE_LOCK = threading.RLock()  # re-entrant: an encoder may wrap another Embedder (a cache)


class Embedder:
    """Batched encoding with a progress bar; counts the texts it encodes and the seconds spent encoding them
    (the index reports its re-embedding work and how much of a build was the model itself).

    ``model`` may be passed in (any object with a SentenceTransformer-like ``encode``), otherwise the named model
    is loaded from the offline store on first use.
    """

    def __init__(self, name: str = DEFAULT_EMBEDDER, *, batch_size: int = 64, device: str = "cpu", model=None):
        self.name = name
        self.batch_size = batch_size
        self.device = device
        self._model = model
        self.texts_encoded = 0
        self.seconds_encoding = 0.0
        self._query_cache: dict[str, np.ndarray] = {}

    @property
    def model(self):
        if self._model is None:
            from clauseloop.models import load_embedder

            self._model = load_embedder(self.name, self.device)
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        with _ENCODE_LOCK:
            started = time.perf_counter()
            vectors = model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
            self.texts_encoded += len(texts)
            self.seconds_encoding += time.perf_counter() - started
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def __deepcopy__(self, memo) -> "Embedder":
        return self  # a handle on a loaded model: programs are deep-copied a lot by DSPy's optimizers

    def encode_query(self, text: str) -> np.ndarray:
        """One query vector; cached, since category queries repeat for every contract."""
        if text not in self._query_cache:
            self._query_cache[text] = self.encode([text])[0]
        return self._query_cache[text]
