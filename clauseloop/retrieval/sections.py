"""Section headings: which titled section of its contract a passage sits in.

A clause's own words are often not enough to say what it is about: the fourth sub-paragraph of "12.2 Right of First
Refusal" talks about notices and 180-day periods, and the last sentences of an "Insurance" section about
certificates and deductibles. Contracts say where they are in their headings, so the learned term models
(:mod:`clauseloop.retrieval.learned`) also see the words of the heading a passage falls under, as separate
``h:``-prefixed features (``h:insurance``, ``h:first_refusal``): the model learns how much a heading's word counts
apart from the same word in the text. On 46 held-out train contracts (models fitted without them) this raised
fused span recall from 0.859 / 0.922 to 0.861 / 0.928 @5 / @10 (``bench/retrieval.py --tune-fusion``).

Headings are found with two patterns, in the text of the passages themselves (so an index, which keeps passages,
and a fit, which has the contracts, see the same headings):

* numbered titles: ``12.2 Right of First Refusal.``, ``ARTICLE XII. CERTAIN RIGHTS``, ``Section 5. Term and
  Termination``, ``8. INSURANCE:`` — a section number (not a page number: "Page 3", "3 of 9"), then up to nine
  capitalized words (joined by short connectors such as "of" and "and"), then a period, colon, line break or
  wide gap;
* stand-alone upper-case lines: ``\\n INSURANCE \\n``.

A title found three or more times in one contract is a page header or a table column ("Global Maintenance
Agreement", "Unit"), not a section, and is ignored; a table of contents (each title once more) does no harm because
the body's heading comes later and wins.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from itertools import groupby
from operator import attrgetter
from typing import Sequence

from clauseloop.retrieval.chunking import Passage

HEADING_PREFIX = "h:"
MAX_REPEATS = 3  # a title this frequent in one contract is a running header, not a section

_CONNECTOR = r"(?:of|and|or|to|the|for|in|on|by|with|a|an|upon|&|/|-)"
_TITLE_WORD = r"(?:[A-Z][A-Za-z'’\-/]*|" + _CONNECTOR + r")"
_NUMBERED = re.compile(
    r"(?:(?<=\s)|^)(?<!of )(?<!Page )"  # a page number is not a section number
    r"(?:(?:ARTICLE|Article|SECTION|Section)\s+)?(?:\d{1,2}(?:\.\d{1,2}){0,3}|[IVX]{1,5})\.?\s+"
    r"([A-Z][A-Za-z'’\-/]*(?:[ ,;]+" + _TITLE_WORD + r"){0,8})\s*(?:[.:]|\s{2,}|\n)"
)
_UPPER_LINE = re.compile(r"(?:^|\n)[ \t]*([A-Z][A-Z ,;&/\-']{3,60}[A-Z])[ \t]*(?:\n|$)")


def find_headings(text: str, offset: int = 0) -> dict[int, str]:
    """Heading titles in ``text`` by where the heading starts (its number, if any), plus ``offset`` (the text's
    place in its contract)."""
    found: dict[int, str] = {}
    numbered_titles = set()  # where numbered titles begin: the same line is not counted again as upper-case
    for match in _NUMBERED.finditer(text):
        title = match.group(1).strip(" ,;")
        if sum(ch.isalpha() for ch in title) >= 3:
            found[offset + match.start()] = title
            numbered_titles.add(match.start(1))
    for match in _UPPER_LINE.finditer(text):
        # A table of contents puts "8." and "PARTIES' WITHDRAWAL" on lines of their own: one heading, matched
        # by both patterns. Counted twice, the title and its body heading would reach MAX_REPEATS and be dropped.
        if match.start(1) not in numbered_titles:
            found.setdefault(offset + match.start(1), match.group(1).strip())
    return found


def contract_headings(passages: Sequence[Passage]) -> list[tuple[int, str]]:
    """The section headings of one contract, found in its passages, in order (running headers removed)."""
    found: dict[int, str] = {}
    for passage in passages:
        for start, title in find_headings(passage.text, passage.start).items():
            if len(title) > len(found.get(start, "")):  # overlapping passages: keep the title seen whole
                found[start] = title
    repeats = Counter(title.lower() for title in found.values())
    return sorted((start, title) for start, title in found.items() if repeats[title.lower()] < MAX_REPEATS)


def passage_headings(passages: Sequence[Passage]) -> list[str]:
    """For each passage (any number of contracts, each contract's passages in reading order), the title of the
    last heading that starts before it ("" when none does)."""
    titles: list[str] = []
    for _, group in groupby(passages, key=attrgetter("contract_id")):
        contract_passages = list(group)
        headings = contract_headings(contract_passages)
        starts = [start for start, _ in headings]
        for passage in contract_passages:
            before = bisect.bisect_right(starts, passage.start)
            titles.append(headings[before - 1][1] if before else "")
    return titles

