"""Evaluate a program on CUAD questions: official span metrics with CIs, per category, judge, speed.

``evaluate(config)`` is what ``clauseloop evaluate`` runs: pick the questions (a split, optionally a limit that is
stratified by category), run the program concurrently (the LM engine batches the calls), score with the official
CUAD procedure (:mod:`clauseloop.program.scoring`), optionally ask an LLM judge, and write ``report.json``,
``report.md`` and ``pr_curve.png`` (plus the official ``nbest_predictions`` when asked).
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import dspy

from clauseloop.data import ClauseQuestion, CuadDataset, load_cuad, split_of
from clauseloop.engine.roles import make_lm
from clauseloop.program.export import to_nbest, write_nbest
from clauseloop.program.scoring import ScoringConfig, score_corpus
from clauseloop.program.types import GoldQuestion, predicted_spans

logger = logging.getLogger(__name__)

PROGRAMS = ("zero-shot", "retrieval")


@dataclass
class EvalConfig:
    """What `clauseloop evaluate` runs; every default is the offline one."""

    program: str = "zero-shot"  # zero-shot | retrieval | a `clauseloop optimize` directory | a program.save JSON
    data: str | None = None  # CUAD file; None: the demo contracts
    split: str = "dev"  # dev | test | train | all
    limit: int | None = None  # at most this many questions, stratified by category
    question_ids: tuple[str, ...] | None = None  # exactly these questions (a fixed set); split and limit then ignored
    lm: str = "student"  # a role name (student/teacher/judge) or a model string
    judge: str | None = None  # judge LM (role or model string); None: no judge
    export_nbest: str | None = None  # also write the official nbest_predictions JSON here
    out_dir: str = "runs/eval"
    threads: int = 16
    gate: bool = True  # the QA program's presence gate (QAConfig.gate); off: the LM answers every question
    bootstrap_draws: int = 1000
    seed: int = 0
    progress: bool = True  # a progress bar over questions (off when stdout must stay clean JSON)


def stratified_questions(
    questions: Sequence[ClauseQuestion], limit: int | None, seed: int = 0, shuffle_categories: bool = False
) -> list[ClauseQuestion]:
    """Up to ``limit`` questions taking categories in turn (seeded order within each), so every category counts.

    Categories take turns alphabetically, or in a seeded order with ``shuffle_categories`` (a limit below the
    number of categories then samples categories instead of always taking the first ones).
    """
    if limit is None or limit >= len(questions):
        return list(questions)
    by_category: dict[str, list[ClauseQuestion]] = defaultdict(list)
    for question in questions:
        by_category[question.category].append(question)
    rng = random.Random(seed)
    for bucket in by_category.values():
        rng.shuffle(bucket)
    categories = sorted(by_category)
    if shuffle_categories:
        rng.shuffle(categories)
    chosen, round_index = [], 0
    while len(chosen) < limit:
        for category in categories:
            if round_index < len(by_category[category]) and len(chosen) < limit:
                chosen.append(by_category[category][round_index])
        round_index += 1
    return chosen


def build_program(spec: str, dataset: CuadDataset, *, gate: bool = True) -> dspy.Module:
    """A program by name (``zero-shot``, ``retrieval``), from a directory written by ``clauseloop optimize``
    (manifest checked), or from a saved JSON state (``program.save``); ``gate``: QAConfig.gate."""
    from clauseloop.program.baselines import RetrievalBaseline
    from clauseloop.program.qa import ContractQA, QAConfig

    if spec == "retrieval":
        return RetrievalBaseline(dataset.contracts)
    if spec != "zero-shot" and Path(spec).is_dir():
        from clauseloop.program.saved import load_compiled

        return load_compiled(spec, dataset, gate=gate)
    program = ContractQA(dataset.contracts, config=QAConfig(gate=gate))
    if spec != "zero-shot":
        if not Path(spec).is_file():
            raise FileNotFoundError(
                f"{spec}: not a saved program; use one of {PROGRAMS}, a directory from `clauseloop optimize` "
                "or a JSON from program.save"
            )
        program.load(spec)
    return program


def run_program(
    program: dspy.Module, questions: Sequence[ClauseQuestion], threads: int, progress: bool = True
) -> list[Any]:
    """Predictions in question order; a failed call becomes an empty prediction and is logged, not hidden."""
    from clauseloop.program.types import example_from_question

    return run_examples(program, [example_from_question(q) for q in questions], threads, progress)


def run_examples(program: dspy.Module, examples: Sequence[Any], threads: int, progress: bool = True) -> list[Any]:
    """``run_program`` for examples built by ``example_from_question``."""
    examples = list(examples)
    results, failed, errors = program.batch(
        examples, num_threads=threads, return_failed_examples=True, max_errors=len(examples) + 1, timeout=0,
        disable_progress_bar=not progress,
    )
    for example, error in zip(failed, errors):
        logger.warning("prediction failed for %s: %s", example.question_id, error)
    return [r if r is not None else dspy.Prediction(spans=[], failed=True) for r in results]


def score_predictions_by_category(golds: list[GoldQuestion], nbest: dict, config: ScoringConfig) -> dict:
    per_category = defaultdict(list)
    for gold in golds:
        per_category[gold.category].append(gold)
    table = {}
    for category, members in sorted(per_category.items()):
        score = score_corpus(members, {g.question_id: nbest[g.question_id] for g in members},
                             ScoringConfig(answer_threshold=config.answer_threshold, bootstrap_draws=0))
        table[category] = score.to_dict()
    return table


def judge_scores(judge_lm: str, questions, predictions, dataset: CuadDataset) -> dict:
    from clauseloop.program.judge import ClauseJudge, judge_metric
    from clauseloop.program.types import example_from_question

    judge = ClauseJudge(lm=make_lm(judge_lm))
    scores = [
        float(judge_metric(example_from_question(q), p, judge=judge))
        for q, p in zip(questions, predictions)
    ]
    return {"judge_lm": judge_lm, "mean": sum(scores) / len(scores) if scores else None, "n": len(scores)}


def lm_usage(lm: Any) -> dict:
    """LM calls and tokens of a run, from the LM's history (a cached reply counts the tokens it cost when made)."""
    entries = [entry.get("usage") or {} for entry in getattr(lm, "history", None) or []]
    return {"calls": len(entries), "prompt_tokens": sum(u.get("prompt_tokens") or 0 for u in entries),
            "completion_tokens": sum(u.get("completion_tokens") or 0 for u in entries)}


def select_questions(dataset: CuadDataset, config: EvalConfig) -> list[ClauseQuestion]:
    """``config.question_ids`` in that order when given (all must exist), else the stratified sample of the split."""
    if config.question_ids is None:
        return stratified_questions(split_of(dataset, config.split).questions, config.limit, config.seed)
    by_id = {question.id: question for question in dataset.questions}
    missing = [qid for qid in config.question_ids if qid not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} question id(s) are not in {dataset.source} (e.g. {missing[0]!r}); "
                         "evaluate on the data the ids came from")
    return [by_id[qid] for qid in config.question_ids]


def evaluate(config: EvalConfig) -> dict:
    """Run, score and write the report; returns it (JSON-able)."""
    from clauseloop.program.report import write_report

    dataset = load_cuad(config.data)
    questions = select_questions(dataset, config)
    if not questions:
        raise ValueError(f"split {config.split!r} of {dataset.source} has no questions; try --split all")
    program = build_program(config.program, dataset, gate=config.gate)
    lm = make_lm(config.lm) if config.program != "retrieval" else None
    started = time.perf_counter()
    with dspy.context(lm=lm):
        predictions = run_program(program, questions, config.threads, config.progress)
    seconds = time.perf_counter() - started
    usage = lm_usage(lm)
    nbest = to_nbest((q.id, predicted_spans(p)) for q, p in zip(questions, predictions))
    golds = [GoldQuestion.from_question(q) for q in questions]
    scoring = ScoringConfig(bootstrap_draws=config.bootstrap_draws, seed=config.seed)
    corpus = score_corpus(golds, nbest, scoring)
    returned = sum(len(predicted_spans(p)) for p in predictions)
    dropped = sum(getattr(p, "dropped", 0) or 0 for p in predictions)
    report = {
        "config": asdict(config),
        "data": {"source": dataset.source, "fingerprint": dataset.fingerprint(), "questions": len(questions),
                 "contracts": len({q.contract_id for q in questions})},
        "overall": corpus.to_dict(),
        "per_category": score_predictions_by_category(golds, nbest, scoring),
        "hallucination_rate": dropped / (dropped + returned) if dropped + returned else 0.0,
        "dropped_spans": dropped,
        "failed_predictions": sum(bool(getattr(p, "failed", False)) for p in predictions),
        "parse_failures": sum(bool(getattr(p, "parse_failed", False)) for p in predictions),
        "gated": sum(bool(getattr(p, "gated", False)) for p in predictions),
        "lm_usage": usage,
        "tokens_per_question": round((usage["prompt_tokens"] + usage["completion_tokens"]) / len(questions), 1),
        "seconds": round(seconds, 2),
        "questions_per_second": round(len(questions) / seconds, 3) if seconds else None,
    }
    if config.judge:
        report["judge"] = judge_scores(config.judge, questions, predictions, dataset)
    if config.export_nbest:
        write_nbest(config.export_nbest, nbest)
    report["files"] = write_report(report, corpus.curve, Path(config.out_dir))
    return report
