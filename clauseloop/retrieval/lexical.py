"""The lexical side of the index: BM25 (``bm25s``) over passages, with a small legal-text-friendly tokenizer.

Contract language is formulaic ("governed by the laws of", "shall not assign"), so exact words matter; the
tokenizer lower-cases, keeps negations (``not``, ``no``, ``without`` carry meaning in clauses) and folds common
English suffixes so "assign", "assigns", "assigned", "assignment" meet. The BM25 state is cheap to rebuild from the
passage texts (about a second per 100 contracts), so it is never persisted: no pickle, nothing to go stale.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Function words only: negations and modals ("not", "shall", "may") stay, they decide what a clause means.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have if in into is it its of on or such that the their then there "
    "these they this those to was were which who whom whose with".split()
)
_SUFFIXES = ("ations", "ation", "ments", "ment", "ings", "ing", "ies", "ied", "ed", "es", "s")


@dataclass(frozen=True)
class LexicalConfig:
    """BM25 parameters (Lucene variant)."""

    k1: float = 1.2
    b: float = 0.75
    bigrams: bool = False  # also index adjacent word pairs, so phrases ("first refusal", "change control") count

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A light suffix folder: enough to match inflections in contracts, never shorter than 4 characters."""
    if word.endswith("'s"):
        word = word[:-2]
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            root = word[: -len(suffix)]
            return root + "y" if suffix in ("ies", "ied") else root
    return word


def tokenize(text: str, bigrams: bool = False) -> list[str]:
    """Lower-cased, stop-word-free, stemmed word tokens (plus ``a_b`` pairs of neighbours with ``bigrams``)."""
    words = [stem(word) for word in _WORD.findall(text.lower()) if word not in STOPWORDS]
    if bigrams:
        words += [f"{left}_{right}" for left, right in zip(words, words[1:])]
    return words


class LexicalIndex:
    """BM25 over a fixed list of passage texts; scores come back for every passage (callers mask or slice)."""

    def __init__(self, texts: Sequence[str], config: LexicalConfig = LexicalConfig()):
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG level
        self.config = config
        self.size = len(texts)
        self._bm25 = bm25s.BM25(k1=config.k1, b=config.b, method="lucene")
        if texts:
            # An empty passage list would make bm25s fail; an index of nothing simply scores nothing.
            self._bm25.index([tokenize(text, config.bigrams) or ["\0"] for text in texts], show_progress=False)

    def scores(self, query: str | Sequence[str]) -> np.ndarray:
        """BM25 score of every passage for ``query`` (text, or tokens; a repeated token counts again)."""
        tokens = tokenize(query, self.config.bigrams) if isinstance(query, str) else list(query)
        known = [t for t in tokens if self.size and t in self._bm25.vocab_dict]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32)
