"""The contract QA program (a DSPy RAG module), its CUAD metrics and the LLM judge (see issue: QA program)."""

from clauseloop.program.export import OFFICIAL_FILENAME, read_nbest, squad_gold, to_nbest, write_nbest, write_squad_gold
from clauseloop.program.metrics import (
    QuestionScore,
    QuestionSummary,
    cuad_f1,
    cuad_precision,
    cuad_recall,
    jaccard,
    no_answer_correct,
    score_example,
    score_question,
    spans_match,
    summarize,
)
from clauseloop.program.scoring import CorpusScore, PRCurve, ScoringConfig, score_corpus, score_predictions
from clauseloop.program.types import GoldQuestion, PredictedSpan, example_from_question, predicted_spans

# the judge imports dspy (about 2 s): load it on first use so metrics stay cheap to import
_JUDGE_NAMES = {"ClauseJudge", "JudgeConfig", "judge_metric", "parse_score"}


def __getattr__(name: str):
    if name in _JUDGE_NAMES:
        from clauseloop.program import judge

        return getattr(judge, name)
    raise AttributeError(f"module 'clauseloop.program' has no attribute {name!r}")


__all__ = [
    "OFFICIAL_FILENAME", "read_nbest", "squad_gold", "to_nbest", "write_nbest", "write_squad_gold",
    "QuestionScore", "QuestionSummary", "cuad_f1", "cuad_precision", "cuad_recall", "jaccard", "no_answer_correct",
    "score_example", "score_question", "spans_match", "summarize",
    "CorpusScore", "PRCurve", "ScoringConfig", "score_corpus", "score_predictions",
    "GoldQuestion", "PredictedSpan", "example_from_question", "predicted_spans",
    *sorted(_JUDGE_NAMES),
]
