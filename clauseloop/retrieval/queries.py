"""Query construction: a category (name, official description, extra terms) becomes a :class:`Query`.

A query has two faces because the two sides of the index want different things: ``text`` is embedded (clause-like
wording matches clause embeddings best), ``terms`` feed BM25 (the words such clauses use). ``lead_weight`` asks the
fusion to favour the first passages of a contract (titles, parties and dates live in the preamble).

Anything callable as ``builder(category, extra_terms) -> Query`` is a :class:`QueryBuilder`, so a DSPy program can
swap in learned or optimized queries. :class:`LearnedQueryBuilder` (the default) is the hand-written
:class:`CategoryQueryBuilder` query plus, for a category with a fitted model, that model in ``Query.learned``
(term weights and a dense probe, see :mod:`clauseloop.retrieval.learned`) for the index to fuse in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Sequence

from clauseloop.retrieval.expansions import hint_for

if TYPE_CHECKING:
    from clauseloop.retrieval.learned import CategoryModel, LearnedQueries


@dataclass(frozen=True)
class Query:
    """What the index searches with: ``text`` for the dense side, ``terms`` for BM25."""

    text: str
    terms: str = ""
    lead_weight: float = 0.0
    category: str | None = None
    # A fitted per-category scorer the index fuses in; left out of equality and repr (it holds arrays).
    learned: "CategoryModel | None" = field(default=None, compare=False, repr=False)

    @property
    def lexical(self) -> str:
        return self.terms or self.text

    def with_terms(self, extra_terms: Sequence[str]) -> "Query":
        """The same query with more words for both sides (e.g. terms a program learned)."""
        extra = " ".join(t for t in extra_terms if t.strip())
        if not extra:
            return self
        return replace(self, text=f"{self.text} {extra}", terms=f"{self.lexical} {extra}")


class QueryBuilder(Protocol):
    def __call__(self, category: str, extra_terms: Sequence[str] = ()) -> Query: ...


@dataclass(frozen=True)
class CategoryQueryBuilder:
    """Category name + hand-written hint terms and example clause (+ the official description if asked).

    The defaults are what measured best on the train split: the description's question wording ("Is there a
    clause...") pulls embeddings towards questions rather than clauses, so it is off unless requested.
    """

    use_hints: bool = True
    use_description: bool = False
    use_lead: bool = True
    extra: dict[str, str] = field(default_factory=dict)  # category name (lower case) -> more terms

    def __call__(self, category: str, extra_terms: Sequence[str] = ()) -> Query:
        from clauseloop.data.categories import get_category

        try:
            known = get_category(category)
            name, description = known.name, known.description
        except KeyError:
            name, description = category, ""
        hint = hint_for(name) if self.use_hints else None
        words = [name]
        if self.use_description and description:
            words.append(description)
        if hint:
            words.append(hint.terms)
        if name.lower() in self.extra:
            words.append(self.extra[name.lower()])
        terms = " ".join(words)
        text = f"{terms} {hint.example}" if hint and hint.example else terms
        lead = hint.lead_weight if hint and self.use_lead else 0.0
        return Query(text=text, terms=text, lead_weight=lead, category=name).with_terms(extra_terms)


@dataclass(frozen=True)
class LearnedQueryBuilder:
    """The hand-written query plus the category's learned model, when one was fitted for it.

    ``learned`` is a :class:`~clauseloop.retrieval.learned.LearnedQueries`, a fitted directory, or None for the
    default (``$CLAUSELOOP_LEARNED_QUERIES`` or the fit shipped with the package). Free text, unknown categories
    and a missing artifact fall back to the hand-written query alone.
    """

    learned: "LearnedQueries | str | Path | None" = None
    fallback: QueryBuilder = field(default_factory=CategoryQueryBuilder)

    def __post_init__(self) -> None:
        from clauseloop.retrieval.learned import default_learned, load_learned

        if self.learned is None:
            object.__setattr__(self, "learned", default_learned())
        elif isinstance(self.learned, (str, Path)):
            object.__setattr__(self, "learned", load_learned(self.learned))

    def __call__(self, category: str, extra_terms: Sequence[str] = ()) -> Query:
        query = self.fallback(category, extra_terms)
        model = self.learned.get(query.category or category) if self.learned is not None else None
        return replace(query, learned=model) if model is not None else query


def description_query(category: str, extra_terms: Sequence[str] = ()) -> Query:
    """The naive baseline: category name + official description, no hints, no lead prior."""
    return CategoryQueryBuilder(use_hints=False, use_description=True, use_lead=False)(category, extra_terms)


def as_query(query: "str | Query") -> Query:
    """Free text is used as is on both sides."""
    return query if isinstance(query, Query) else Query(text=query, terms=query)
