"""LLM-as-judge for clause answers: a rubric-graded score in [0, 1] with a rationale, robust to malformed output.

The rubric (``JudgeClauseAnswer``'s instructions) asks three things: are the spans *grounded* (verbatim in the
contract), do they *cover* the gold clause(s), and is there *nothing extraneous*. The judge answers with a
rationale and a score. The score field is a plain string on purpose: we parse it ourselves (``parse_score``), so
"0.8", "4/5", "score: 3 out of 5", "80%" or "yes" all work, and when the LM ignores the output format altogether
(DSPy raises ``AdapterParseError``) we parse the raw reply instead of failing. When nothing can be read the score
is ``None`` and ``parsed`` is False; ``judge_metric`` then counts 0.

Bare numbers are read on the scale they most plausibly use: [0, 1] as is, (1, 5] as a 5-point grade, (5, 10] out
of 10, (10, 100] as a percentage; anything else is unreadable.

The judge model is chosen apart from the answering model: pass ``lm=`` (any ``dspy.BaseLM``), or leave it out and
the judge asks ``clauseloop.engine.make_lm(config.role)``: the "judge" role of the roles config, set apart from the
student (``CLAUSELOOP_JUDGE``, a roles file, or ``--judge``).
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Any, Sequence

import dspy
from dspy.utils.exceptions import AdapterParseError

from clauseloop.program.types import PredictedSpan, predicted_spans

logger = logging.getLogger(__name__)

_NUMBER = r"(-?\d+(?:\.\d+)?)"
_FRACTION = re.compile(_NUMBER + r"\s*(?:/|out\s+of)\s*" + _NUMBER)
_PERCENT = re.compile(_NUMBER + r"\s*%")
_LABELLED = re.compile(r"score(?:\s+(?:of|is))?\W{0,6}" + _NUMBER)
# a leading number, but not a list marker such as "1. Grounded" or "2) Covers"
# (markup such as "**" or a "- " bullet may come first, a minus sign may not: negatives are unreadable)
_LEADING_NUMBER = re.compile(r"^(?:[^\w-]|-\s){0,3}" + _NUMBER + r"(?![\d/%)]|\.\s)")
# a verdict word opens the reply and stands alone ("Yes.", "no, because…"), unlike "No span is extraneous"
_VERDICT_END = r"\s*(?:[.,!;:]|$)"
_VERDICTS = [
    (re.compile(r"^\W*(?:yes|correct|pass|good)" + _VERDICT_END), 1.0),
    (re.compile(r"^\W*(?:partial|partially)" + _VERDICT_END), 0.5),
    (re.compile(r"^\W*(?:no|incorrect|wrong|fail)" + _VERDICT_END), 0.0),
]
_SECTION = re.compile(r"\[\[\s*##\s*(\w+)\s*##\s*\]\]")


@dataclass(frozen=True)
class JudgeConfig:
    """``role``: the engine role used when no ``lm`` is given. Excerpts keep ``window_chars`` around each span and
    at most ``max_context_chars`` in all; ``pass_score`` turns the score into a bool when DSPy passes a trace."""

    role: str = "judge"
    window_chars: int = 300
    max_context_chars: int = 2000
    max_span_chars: int = 600
    pass_score: float = 0.5


class JudgeClauseAnswer(dspy.Signature):
    """You grade a contract-review answer. The question asks which parts of a contract are about a clause category;
    the answer is a list of text spans copied from the contract. Check three criteria:
    1. Grounded: every span appears in the contract (no invented or paraphrased text).
    2. Covers the gold: the spans contain the gold clause(s); if there is no gold clause, the right answer is none.
    3. Nothing extraneous: no span is unrelated to the category.
    Give a short rationale, then a score from 0.0 (wrong) to 1.0 (fully correct)."""

    category: str = dspy.InputField(desc="the clause category asked about")
    question: str = dspy.InputField()
    contract_excerpt: str = dspy.InputField(desc="contract text around the spans (may be partial)")
    gold_clauses: str = dspy.InputField(desc="what a lawyer highlighted, or a note that there is none / unknown")
    predicted_spans: str = dspy.InputField(desc="the spans the system answered with")
    rationale: str = dspy.OutputField(desc="one to three sentences, one per criterion")
    score: str = dspy.OutputField(desc="a single number from 0.0 to 1.0")


def _on_scale(value: float) -> float | None:
    for top in (1.0, 5.0, 10.0, 100.0):
        if 0.0 <= value <= top:
            return value / top
    return None


def parse_score(text: str | None) -> float | None:
    """A score in [0, 1] read from free text ("0.8", "4/5", "score: 3 out of 5", "80%", "yes"), else ``None``."""
    if not text:
        return None
    text = text.strip().lower()
    if fraction := _FRACTION.search(text):
        numerator, denominator = float(fraction.group(1)), float(fraction.group(2))
        if denominator > 0 and 0 <= numerator <= denominator:
            return numerator / denominator
    if percent := _PERCENT.search(text):
        return _on_scale(float(percent.group(1)) / 100)
    for pattern in (_LABELLED, _LEADING_NUMBER):
        if number := pattern.search(text):
            return _on_scale(float(number.group(1)))
    for pattern, value in _VERDICTS:
        if pattern.search(text):
            return value
    return None


def sections(raw: str) -> dict[str, str]:
    """The ``[[ ## field ## ]]`` sections of a raw chat-adapter reply (empty when there are none)."""
    parts = _SECTION.split(raw)
    return {name.lower(): body.strip() for name, body in zip(parts[1::2], parts[2::2])}


def parse_raw_reply(raw: str) -> tuple[float | None, str]:
    """(score, rationale) from a reply the adapter could not parse: its sections if any, else the whole text."""
    found = sections(raw)
    rationale = found.get("rationale") or raw.strip()[:500]
    if "score" in found:
        return parse_score(found["score"]), rationale
    # look at lines that name the score first: a bare number elsewhere is more likely a section number
    for line in raw.splitlines():
        if "score" in line.lower() and (score := parse_score(line[line.lower().index("score"):])) is not None:
            return score, rationale
    return parse_score(raw), rationale


def format_spans(spans: Sequence[PredictedSpan], max_chars: int) -> str:
    if not spans:
        return "(no spans: the system answered that the contract has no such clause)"
    return "\n".join(f"{i}. {span.text[:max_chars]}" for i, span in enumerate(spans, 1))


def format_gold(gold: Sequence[str] | None, max_chars: int) -> str:
    if gold is None:
        return "(unknown: judge on the contract excerpt alone)"
    if not gold:
        return "(none: the contract has no such clause, so the correct answer is no span)"
    return "\n".join(f"{i}. {text[:max_chars]}" for i, text in enumerate(gold, 1))


def contract_excerpt(contract_text: str | None, spans: Sequence[PredictedSpan], config: JudgeConfig) -> str:
    """Windows of the contract around the located spans, joined by "…", at most ``max_context_chars`` long."""
    if not contract_text:
        return ""
    windows = []
    for span in spans:
        if span.start is None or span.end is None:
            continue
        start, end = max(0, span.start - config.window_chars), span.end + config.window_chars
        windows.append(contract_text[start:end])
    return "\n…\n".join(windows)[: config.max_context_chars]


def resolve_judge_lm(role: str) -> Any:
    """The LM of ``role`` (default "judge") from the roles config: its own model, not the answering one."""
    from clauseloop.engine.roles import make_lm

    return make_lm(role)


class ClauseJudge(dspy.Module):
    """Grades predicted spans against the rubric. Returns ``dspy.Prediction(score, rationale, parsed)``:
    ``score`` in [0, 1] or ``None`` when the reply was unreadable (then ``parsed`` is False). Never raises on a
    malformed reply. Both gold and prediction empty is correct by definition and costs no LM call."""

    def __init__(self, lm: Any = None, config: JudgeConfig = JudgeConfig()):
        super().__init__()
        self.config = config
        self.judge_lm = lm
        self.grade = dspy.Predict(JudgeClauseAnswer)

    def _lm(self) -> Any:
        if self.judge_lm is None:
            self.judge_lm = resolve_judge_lm(self.config.role)
        return self.judge_lm

    def forward(
        self,
        category: str,
        question: str,
        spans: Sequence[Any] = (),
        gold_spans: Sequence[str] | None = None,
        contract_excerpt: str = "",
    ) -> dspy.Prediction:
        spans = [PredictedSpan.coerce(span) for span in spans]
        if gold_spans is not None and not gold_spans and not spans:
            return dspy.Prediction(score=1.0, rationale="No clause exists and none was predicted.", parsed=True)
        inputs = dict(
            category=category,
            question=question,
            contract_excerpt=contract_excerpt or "(not available)",
            gold_clauses=format_gold(gold_spans, self.config.max_span_chars),
            predicted_spans=format_spans(spans, self.config.max_span_chars),
        )
        # no JSON-adapter retry: a model that ignores the chat format rarely writes JSON, and we parse raw text
        adapter = dspy.ChatAdapter(use_json_adapter_fallback=False)
        try:
            with dspy.context(lm=self._lm(), adapter=adapter):
                out = self.grade(**inputs)
            score, rationale = parse_score(out.score), out.rationale
        except AdapterParseError as error:
            logger.debug("judge reply did not follow the format; parsing it as raw text")
            score, rationale = parse_raw_reply(str(error.lm_response or ""))
        return dspy.Prediction(score=score, rationale=rationale, parsed=score is not None)


def retrieved_context(pred: Any) -> str:
    """What the program read: ``pred.passages`` (``ContractQA``: objects with ``.text``) or ``pred.context``."""
    get = pred.get if hasattr(pred, "get") else lambda key, default=None: getattr(pred, key, default)
    context = get("passages", None) or get("context", None) or ""
    if isinstance(context, str):
        return context
    return "\n…\n".join(p if isinstance(p, str) else getattr(p, "text", str(p)) for p in context)


def judge_inputs(example: Any, pred: Any, config: JudgeConfig = JudgeConfig()) -> dict[str, Any]:
    """``ClauseJudge`` inputs for a DSPy example and prediction. The excerpt comes from ``example.contract_text``
    around located spans, else from what the program retrieved (``retrieved_context``)."""
    spans = predicted_spans(pred)
    get = example.get if hasattr(example, "get") else lambda key, default=None: getattr(example, key, default)
    excerpt = contract_excerpt(get("contract_text", None), spans, config)
    if not excerpt:
        excerpt = retrieved_context(pred)[: config.max_context_chars]
    gold = get("gold_spans", None)
    return dict(
        category=get("category", ""),
        question=get("question", ""),
        spans=spans,
        gold_spans=None if gold is None else [g if isinstance(g, str) else g.text for g in gold],
        contract_excerpt=excerpt,
    )


@functools.lru_cache(maxsize=1)
def default_judge() -> ClauseJudge:
    """The process-wide judge used by ``judge_metric`` when none is passed (its LM resolved on first use)."""
    return ClauseJudge()


def judge_metric(example: Any, pred: Any, trace: Any = None, judge: ClauseJudge | None = None) -> float | bool:
    """DSPy metric: the judge's score (0 when unreadable); with a trace, ``score ≥ config.pass_score``."""
    judge = judge or default_judge()
    score = judge(**judge_inputs(example, pred, judge.config)).score or 0.0
    return score if trace is None else score >= judge.config.pass_score
