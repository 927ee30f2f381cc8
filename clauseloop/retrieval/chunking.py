"""Split contracts into passages that keep their character offsets: ``contract.text[p.start:p.end] == p.text``.

A contract is first cut into *units* at clause-like boundaries (line breaks, sentence ends, runs of spaces that
PDF conversion leaves between numbered sections). Units are then packed greedily into passages of at most
``max_chars`` characters; consecutive passages share up to ``overlap_chars`` characters of whole units, so a clause
that straddles a boundary still lies whole inside one passage. A unit longer than ``max_chars`` (a run-on
paragraph) is cut at word boundaries with the same overlap. Passages never start or end with whitespace.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Iterable

from clauseloop.data.records import Contract

# A boundary is whitespace after a sentence end, a line break, or a wide gap (3+ spaces) left by PDF conversion.
_BOUNDARY = re.compile(r"(?<=[.;:!?])\s+(?=[\"“(\[A-Z0-9])|\s*\n\s*|\s{3,}")
_WORD_GAP = re.compile(r"\s+")


@dataclass(frozen=True)
class ChunkConfig:
    """How contracts are cut into passages (part of an index's identity: changing it rebuilds the index)."""

    max_chars: int = 600  # the longest passage; the QA program reads a few of them, so keep them short
    overlap_chars: int = 300  # text shared by consecutive passages (whole units), so clauses are not cut
    min_chars: int = 1  # drop passages shorter than this (page numbers, stray headings)

    def __post_init__(self) -> None:
        if self.max_chars < 20:
            raise ValueError(f"max_chars must be at least 20, got {self.max_chars}")
        if not 0 <= self.overlap_chars < self.max_chars:
            raise ValueError(f"overlap_chars must be in [0, max_chars), got {self.overlap_chars}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Passage:
    """A piece of one contract; ``position`` is its rank within the contract (0 = first passage)."""

    contract_id: str
    start: int
    end: int
    text: str
    position: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def split_units(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the non-blank clause-like units of ``text``, in order, without edge whitespace."""
    units, cursor = [], 0
    for match in _BOUNDARY.finditer(text):
        units.extend(_trimmed(text, cursor, match.start()))
        cursor = match.end()
    units.extend(_trimmed(text, cursor, len(text)))
    return units


def _trimmed(text: str, start: int, end: int) -> list[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if end > start else []


def _split_long(text: str, start: int, end: int, config: ChunkConfig) -> list[tuple[int, int]]:
    """Cut an over-long unit into word-aligned pieces of at most ``max_chars`` (hard cuts for giant words)."""
    cuts = [start] + [m.end() for m in _WORD_GAP.finditer(text, start, end)] + [end]
    pieces, piece_start = [], start
    while piece_start < end:
        limit = piece_start + config.max_chars
        if limit >= end:
            piece_end = end
        else:
            piece_end = max((c for c in cuts if piece_start < c <= limit), default=limit)
        pieces.extend(_trimmed(text, piece_start, piece_end))
        if piece_end >= end:
            break
        back = max(piece_end - config.overlap_chars, piece_start + 1)
        piece_start = min((c for c in cuts if back <= c < piece_end), default=piece_end)
    return pieces


def _bounded_units(text: str, config: ChunkConfig) -> list[tuple[int, int]]:
    units = []
    for start, end in split_units(text):
        units.extend([(start, end)] if end - start <= config.max_chars else _split_long(text, start, end, config))
    return units


def chunk_spans(text: str, config: ChunkConfig = ChunkConfig()) -> list[tuple[int, int]]:
    """``(start, end)`` of the passages of ``text``: packed units, each at most ``max_chars`` long."""
    units = _bounded_units(text, config)
    spans, first = [], 0
    while first < len(units):
        last = first  # inclusive: the passage is units[first..last]
        while last + 1 < len(units) and units[last + 1][1] - units[first][0] <= config.max_chars:
            last += 1
        spans.append((units[first][0], units[last][1]))
        if last + 1 >= len(units):
            break
        # Step back over whole units that fit in the overlap, but always move forward.
        next_first = last + 1
        while next_first - 1 > first and units[last][1] - units[next_first - 1][0] <= config.overlap_chars:
            next_first -= 1
        first = next_first
    return [(s, e) for s, e in spans if e - s >= config.min_chars]


def chunk_contract(contract: Contract, config: ChunkConfig = ChunkConfig()) -> list[Passage]:
    """The passages of one contract, in reading order."""
    return [
        Passage(contract.id, start, end, contract.text[start:end], position)
        for position, (start, end) in enumerate(chunk_spans(contract.text, config))
    ]


def chunk_contracts(contracts: Iterable[Contract], config: ChunkConfig = ChunkConfig()) -> list[Passage]:
    return [passage for contract in contracts for passage in chunk_contract(contract, config)]
