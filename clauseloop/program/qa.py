"""`ContractQA`: the grounded DSPy RAG program that teleprompters optimize and the student is distilled from.

For one contract and one category (or a free question) it retrieves a few passages *from that contract*, asks the
LM to quote the clauses about the category verbatim (or say NONE), and grounds every quote in the contract text
(see :mod:`clauseloop.program.grounding`). Overlapping passages are shown once, merged; a last quote that the
token budget cut off is completed to its sentence end from the contract (decoding is the dearest part of a review
on CPU, copying from the contract is free). The prediction carries ``spans`` (``PredictedSpan`` with offsets and a
confidence), the ``passages`` shown, the raw ``answer``, ``dropped`` (quotes that could not be located), the LM's
``certainty`` and its ``presence`` (1 - P(NONE) at the first answer token, None without log-probs).

Confidence in [0, 1] = LM certainty × retrieval support:

* LM certainty is the geometric-mean probability of the generated tokens, ``exp(mean logprob)``, when the LM
  reports log-probabilities (``LocalLM`` does with ``logprobs=True``); otherwise 1; and 0.5 when the reply broke
  the output format and was grounded from its raw text (quotes in it still count if they are contract text).
* Retrieval support is ``(k - rank) / k`` for a span inside the passage at ``rank`` (0 = best), and ``1 / (2k)``
  for a span the LM quoted from elsewhere in the contract.

This ranks spans for CUAD's precision-recall curve (AUPR) without a second LM call.

Before any of that, the presence gate (:mod:`clauseloop.retrieval.gate`, ``QAConfig.gate``) answers "no clause"
for a category whose learned term model finds nothing like it in the contract; such predictions carry
``gated=True`` and cost no LM call.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import dspy
from dspy.utils.exceptions import AdapterParseError

from clauseloop.data import CATEGORY_NAMES, Contract, get_category
from clauseloop.program.grounding import ground
from clauseloop.program.types import PredictedSpan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QAConfig:
    """Settings of the QA program; defaults suit the 135M local student on a 2-core CPU (short prompts)."""

    # Prompt tokens dominate a review on CPU (41 prompts; prefill runs at the machine's GEMM peak): two passages
    # (overlapping ones merged) cost 108 → 78 s for a median contract against three, at 32 answer tokens.
    k: int = 2  # passages shown to the LM
    max_description_chars: int = 240  # the category description as the LM sees it
    max_tokens: int = 32  # the LM's answer budget; a quote cut by it is completed to its sentence end from the contract
    logprobs: bool = True  # ask the LM for token log-probs (confidence); ignored by LMs that cannot
    top_logprobs: int = 5  # alternatives per token: P(NONE) at the answer's first token gives `presence`
    review_threads: int = 16  # concurrent requests in review(): the engine batches them
    # Answer "no clause" without the LM when the category's learned presence score for the contract is below its
    # cross-fitted threshold (clauseloop.retrieval.gate): most categories are absent from most contracts.
    gate: bool = True
    gate_recall: float = 0.97  # share of (held-out training) contracts with a clause the gate must let through


class ExtractClauses(dspy.Signature):
    """Quote word for word the sentences of the contract passages that are about the clause category.
    Put each quote on its own line. If no passage is about the category, answer NONE."""

    category: str = dspy.InputField(desc="the clause category and what it covers")
    passages: str = dspy.InputField(desc="numbered passages from one contract")
    clauses: str = dspy.OutputField(desc="verbatim quotes from the passages, one per line, or NONE")


Retriever = Callable[[Contract, str, int], Sequence[Any]]


class _Shared:
    """Contracts, retriever and gate are shared by every copy of a program (teleprompters deepcopy programs a lot)."""

    def __init__(self, contracts: Mapping[str, Contract], retriever: Retriever | None, gate: Any):
        self.contracts, self.retriever, self.gate = dict(contracts), retriever, gate

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self


def category_prompt(category: str | None, question: str | None, max_chars: int) -> str:
    """What the LM reads as its task: a known category with its official description, or the free question."""
    if category and category in CATEGORY_NAMES:
        description = get_category(category).description
        text = f"{category}: {description}"
    else:
        text = question or category or ""
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def search_query(category: str | None, question: str | None) -> Any:
    """A known category gets the retrieval package's category query (hints, lead prior); else the question."""
    from clauseloop.retrieval import category_query

    if category and category in CATEGORY_NAMES:
        return category_query(category)
    return question or category or ""


def merge_overlapping(passages: Sequence[Any], text: str) -> list[tuple[int, int]]:
    """The passages' ``(start, end)`` ranges with overlapping or touching ones merged, best-ranked first.

    Neighbouring passages share half their text (chunk overlap): showing the union once saves prompt tokens,
    which are most of a review's cost on CPU, and the LM reads the clause in one piece.
    """
    merged: list[list[int]] = []  # [start, end, best rank]
    for rank, passage in sorted(enumerate(passages), key=lambda item: item[1].start):
        if merged and passage.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], passage.end)
            merged[-1][2] = min(merged[-1][2], rank)
        else:
            merged.append([passage.start, passage.end, rank])
    return [(start, end) for start, end, _ in sorted(merged, key=lambda item: item[2])]


def format_passages(passages: Sequence[Any], text: str | None = None) -> str:
    """Numbered passages with whitespace collapsed; given the contract ``text``, overlapping ones are merged."""
    excerpts = [text[s:e] for s, e in merge_overlapping(passages, text)] if text else [p.text for p in passages]
    return "\n".join(f"[{number}] {' '.join(e.split())}" for number, e in enumerate(excerpts, start=1))


def _field(entry: Any, name: str) -> Any:
    return entry.get(name) if isinstance(entry, dict) else getattr(entry, name, None)


def logprob_entries(prediction: Any) -> list[Any]:
    """The completion's per-token entries (``token``, ``logprob``, ``top_logprobs``) as DSPy passes them on
    (OpenAI format), or [] when the LM gave none."""
    logprobs = getattr(prediction, "logprobs", None) or (prediction.get("logprobs") if isinstance(prediction, dict) else None)
    return list(_field(logprobs, "content") or []) if logprobs else []


def token_logprobs(prediction: Any) -> list[float]:
    """The completion's per-token log-probs, or [] when the LM gave none."""
    values = [_field(entry, "logprob") for entry in logprob_entries(prediction)]
    return [float(v) for v in values if isinstance(v, (int, float))]


_NONE_PREFIXES = {"N", "NO", "NON", "NONE"}  # how a reply that starts "NONE" can begin, token by token


def answer_presence(prediction: Any) -> float | None:
    """1 - P(the answer is NONE): the LM's probability, at the first token of its answer, of starting anything but
    NONE, from the chosen token and its ``top_logprobs``. None when the LM gave no log-probs or no answer header.

    The LM's own judgement that the contract has such a clause: what ranks questions against each other in CUAD's
    pooled AUPR, where the token certainty only says how sure the LM was of the words it copied. Not yet part of
    the span confidence: the shipped student's presence barely separates questions with a clause from those
    without (``bench/confidence.py``).
    """
    text = ""
    for entry in logprob_entries(prediction):
        if "]]" in text and text.endswith("\n"):  # the first token after the output field's [[ ## … ## ]] header
            choices = {_field(entry, "token"): _field(entry, "logprob")}
            choices.update({_field(top, "token"): _field(top, "logprob") for top in _field(entry, "top_logprobs") or []})
            none = sum(math.exp(lp) for token, lp in choices.items()
                       if isinstance(lp, (int, float)) and str(token).strip() in _NONE_PREFIXES)
            return max(0.0, 1.0 - none)
        text += str(_field(entry, "token") or "")
    return None


def lm_certainty(prediction: Any) -> float:
    """exp(mean token logprob) of the completion, or 1.0 when the LM gave no log-probs."""
    values = [v for v in token_logprobs(prediction) if math.isfinite(v)]
    return math.exp(sum(values) / len(values)) if values else 1.0


def retrieval_support(start: int, end: int, passages: Sequence[Any]) -> float:
    k = max(len(passages), 1)
    for rank, passage in enumerate(passages):
        if passage.start <= start and end <= passage.end:
            return (k - rank) / k
    return 1 / (2 * k)


class ContractQA(dspy.Module):
    """Retrieve from one contract, quote the clauses about a category, ground them with offsets."""

    def __init__(
        self,
        contracts: Mapping[str, Contract] | None = None,
        retriever: Retriever | None = None,
        config: QAConfig = QAConfig(),
        gate: Any = None,
    ):
        """``gate``: a :class:`~clauseloop.retrieval.gate.PresenceGate` (default: the default learned queries')."""
        super().__init__()
        self.config = config
        self.shared = _Shared(contracts or {}, retriever, gate)
        self.extract = dspy.Predict(ExtractClauses)

    def add_contracts(self, contracts: Mapping[str, Contract]) -> None:
        self.shared.contracts.update(contracts)

    def retrieve(self, contract: Contract, category: str | None, question: str | None) -> list[Any]:
        """Passages (``.text``, ``.start``, ``.end``) of ``contract`` for the category or question, best first."""
        query = search_query(category, question)
        if self.shared.retriever is not None:
            return list(self.shared.retriever(contract, query, self.config.k))
        from clauseloop.retrieval import retrieve_in_contract

        return [hit.passage for hit in retrieve_in_contract(contract, query, self.config.k)]

    def forward(
        self,
        contract_id: str | None = None,
        category: str | None = None,
        question: str | None = None,
        contract: Contract | None = None,
    ) -> dspy.Prediction:
        contract = contract or self._contract(contract_id)
        if self.config.gate and category in CATEGORY_NAMES and not self._gate().allows(contract, category):
            return dspy.Prediction(spans=[], passages=[], answer="NONE", dropped=0, parse_failed=False, gated=True)
        passages = self.retrieve(contract, category, question)
        answer, certainty, presence, parse_failed, was_cut = self._ask(contract, category, question, passages)
        windows = [(p.start, p.end) for p in passages]
        located, dropped = ground(answer, contract.text, windows, answer_was_cut=was_cut)
        spans = [
            PredictedSpan(s.text, s.start, s.end, round(certainty * retrieval_support(s.start, s.end, passages), 6))
            for s in located
        ]
        return dspy.Prediction(spans=spans, passages=passages, answer=answer, dropped=dropped,
                               parse_failed=parse_failed, certainty=certainty, presence=presence)

    def _ask(self, contract: Contract, category: str | None, question: str | None, passages: Sequence[Any]):
        """(answer, certainty, presence, parse_failed, was_cut) of one LM call over the passages."""
        # Stop at the adapter's end marker: small LMs otherwise repeat themselves up to max_tokens.
        lm_kwargs = {"max_tokens": self.config.max_tokens, "stop": ["[[ ## completed"]}
        if self.config.logprobs:
            lm_kwargs.update(logprobs=True, top_logprobs=self.config.top_logprobs)
        # Without a configured adapter, no JSON retry: a small LM that ignores the chat format rarely writes
        # JSON either, and the retry doubles the cost. Its raw reply is still grounded below.
        adapter = dspy.settings.adapter or dspy.ChatAdapter(use_json_adapter_fallback=False)
        try:
            with dspy.context(adapter=adapter):
                prediction = self.extract(
                    category=category_prompt(category, question, self.config.max_description_chars),
                    passages=format_passages(passages, contract.text),
                    config=lm_kwargs,
                )
        except AdapterParseError as error:
            logger.debug("unparseable answer for %s / %s; grounding the raw reply", contract.id, category)
            return str(error.lm_response or ""), 0.5, None, True, False
        # The log-probs list one entry per generated token: a full budget means the last quote was cut.
        was_cut = len(token_logprobs(prediction)) >= self.config.max_tokens
        return prediction.clauses, lm_certainty(prediction), answer_presence(prediction), False, was_cut

    def _gate(self) -> Any:
        if self.shared.gate is None:
            from clauseloop.retrieval.gate import default_gate

            self.shared.gate = default_gate(self.config.gate_recall)
        return self.shared.gate

    def _contract(self, contract_id: str | None) -> Contract:
        if contract_id in self.shared.contracts:
            return self.shared.contracts[contract_id]
        raise KeyError(
            f"unknown contract {contract_id!r}: pass contract=Contract(...) or give the program the contracts "
            "(ContractQA(contracts=dataset.contracts) / program.add_contracts(...))"
        )

    def review(self, contract: Contract, categories: Sequence[str] = CATEGORY_NAMES) -> dict[str, dspy.Prediction]:
        """All categories for one contract, issued concurrently so the LM engine can batch them."""
        examples = [dspy.Example(contract=contract, category=c).with_inputs("contract", "category") for c in categories]
        results = self.batch(
            examples, num_threads=self.config.review_threads, disable_progress_bar=True, timeout=0
        )
        return dict(zip(categories, results))
