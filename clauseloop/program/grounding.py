"""Ground LM output in the contract: every returned span must be contract text with exact offsets.

An LM asked to copy clauses verbatim still paraphrases, re-wraps lines, drops a space or adds quotes and bullets.
We parse its answer into candidate quotes, then find each one in the contract: first an exact match, then a match
that ignores differences in whitespace (PDF-converted contracts are full of runs of spaces and line breaks).
Preference goes to matches inside the retrieved passages, which is where the LM was looking. A quote that cannot
be found is *dropped and counted*, never returned: returned text is always contract text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

_NONE_ANSWER = re.compile(r"^\W*(none|n/?a|no(?: such)? clauses?|nothing|not applicable|no)\W*$", re.I)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\(?\d{1,2}[.)]|\[\d{1,2}\])\s+")
_QUOTES = "\"'“”‘’`"
MIN_QUOTE_CHARS = 4  # shorter fragments ("a", "the") match anywhere and mean nothing
MAX_COMPLETION_CHARS = 400  # how far a quote cut by the token budget may be extended to its sentence end
_SENTENCE_END = re.compile(r"[.;](?=\s)|\n\s*\n")


@dataclass(frozen=True)
class Located:
    text: str
    start: int
    end: int


def parse_quotes(answer: str | None) -> list[str]:
    """Candidate verbatim quotes from an LM answer: one per line, list markers and wrapping quotes removed."""
    if not answer or _NONE_ANSWER.match(answer.strip()):
        return []
    quotes = []
    for line in answer.splitlines():
        line = _LIST_MARKER.sub("", line).strip().strip(_QUOTES).strip()
        if len(line) >= MIN_QUOTE_CHARS and not _NONE_ANSWER.match(line) and line not in quotes:
            quotes.append(line)
    return quotes


def _whitespace_pattern(quote: str) -> re.Pattern[str]:
    words = quote.split()
    return re.compile(r"\s+".join(re.escape(word) for word in words))


def locate(quote: str, text: str, windows: Sequence[tuple[int, int]] = ()) -> Located | None:
    """Where ``quote`` occurs in ``text`` (preferring the ``(start, end)`` windows), or None."""
    for start, end in [*windows, (0, len(text))]:
        found = text.find(quote, start, end)
        if found >= 0:
            return Located(quote, found, found + len(quote))
    pattern = _whitespace_pattern(quote)
    for start, end in [*windows, (0, len(text))]:
        match = pattern.search(text, start, end)
        if match:
            return Located(match.group(0), match.start(), match.end())
    return None


def complete_sentence(span: Located, text: str, max_chars: int = MAX_COMPLETION_CHARS) -> Located:
    """``span`` extended to the end of its sentence (``.``/``;`` before a space, or a blank line) in ``text``.

    A quote that the LM's token budget cut off mid-sentence is still contract text, but CUAD's gold spans are whole
    clauses; finishing the sentence from the contract costs nothing, whereas letting the LM copy it costs a decoding
    step per token (the dominant cost of a review on CPU). The result is still exactly ``text[start:end]``.
    """
    if span.text.rstrip().endswith((".", ";")):
        return span  # already whole
    match = _SENTENCE_END.search(text, span.end, min(len(text), span.end + max_chars))
    if match is None:
        return span
    end = match.end() if match.group(0) in ".;" else match.start()
    return Located(text[span.start : end], span.start, end)


def ground(
    answer: str | None, text: str, windows: Sequence[tuple[int, int]] = (), *, answer_was_cut: bool = False
) -> tuple[list[Located], int]:
    """Located spans of an LM answer (distinct, in answer order) and how many quotes could not be found.

    ``answer_was_cut``: the LM stopped at its token budget, so the last quote is completed to its sentence end.
    """
    quotes = parse_quotes(answer)
    located, dropped = [], 0
    for index, quote in enumerate(quotes):
        span = locate(quote, text, windows)
        if span is None:
            dropped += 1
            continue
        if answer_was_cut and index == len(quotes) - 1:
            span = complete_sentence(span, text)
        if all((span.start, span.end) != (other.start, other.end) for other in located):
            located.append(span)
    return located, dropped
