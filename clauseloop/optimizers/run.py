"""``optimize(config)``: what ``clauseloop optimize`` runs, from data to a saved, scored, compiled program.

1. load the data; take training questions from the train split and validation questions from the dev split, each
   limited with the category-stratified selection of ``stratified_questions`` (categories in a seeded order);
   the test split is never read (:func:`clauseloop.optimizers.config.refuse_held_out_split`);
2. compile the QA program with the chosen teleprompter (teacher and student LMs, metered and cached calls in
   ``OUT/cache``, so a re-run after an interruption or a spent budget continues where it stopped);
3. score the compiled program on the validation questions with CUAD's official scorer (AUPR, F1, no-answer
   accuracy, dropped-span rate);
4. write ``OUT/program.json`` and ``OUT/manifest.json`` (:mod:`clauseloop.optimizers.saved`).

The library logs; the CLI prints.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clauseloop.data import ClauseQuestion, CuadDataset, split_of
from clauseloop.optimizers.config import OptimizeConfig, refuse_held_out_split
from clauseloop.optimizers.data import check_contracts_disjoint, check_trainset_size

logger = logging.getLogger(__name__)

CACHE_DIR = "cache"  # inside the output directory: the LM answers a re-run replays
DEV_SCORE_KEYS = ("aupr", "prec_at_80_recall", "f1", "precision", "recall", "no_answer_accuracy", "laziness")


@dataclass
class OptimizationData:
    """Training and validation examples, where they come from, and a fingerprint of the questions used."""

    trainset: list[Any]
    valset: list[Any]
    fingerprint: str
    source: str
    held_out_contracts: frozenset[str]


def select_questions(dataset: CuadDataset, split: str, limit: int | None, seed: int) -> list[ClauseQuestion]:
    """Up to ``limit`` questions of ``split`` (train or dev only), categories taken in turn."""
    from clauseloop.program.evaluation import stratified_questions

    refuse_held_out_split(split)
    # Categories in a seeded order: small limits then sample categories rather than the alphabetically first.
    return stratified_questions(split_of(dataset, split).questions, limit, seed, shuffle_categories=True)


def load_optimization_data(dataset: CuadDataset, config: OptimizeConfig) -> OptimizationData:
    """The examples an optimizer may use, checked: enough of them, contract-disjoint, none from the test split."""
    from clauseloop.program.types import example_from_question

    train_questions = select_questions(dataset, config.train_split, config.max_train_examples, config.seed)
    val_questions = select_questions(dataset, config.val_split, config.max_val_examples, config.seed)
    trainset = [example_from_question(q) for q in train_questions]
    valset = [example_from_question(q) for q in val_questions]
    held_out = frozenset(split_of(dataset, "test").contracts)  # ids only, to refuse them
    check_trainset_size(trainset)
    check_contracts_disjoint(trainset, valset, held_out)
    used = train_questions + val_questions
    used_contracts = {q.contract_id for q in used}
    fingerprint = CuadDataset(
        contracts={cid: c for cid, c in dataset.contracts.items() if cid in used_contracts}, questions=used
    ).fingerprint()
    return OptimizationData(trainset, valset, fingerprint, dataset.source, held_out)


def dev_scores(valset: Sequence[Any], predictions: Sequence[Any]) -> dict[str, Any]:
    """Official corpus scores of predictions on the validation examples, plus what the program dropped."""
    from clauseloop.program.scoring import ScoringConfig, score_predictions
    from clauseloop.program.types import predicted_spans

    numbers = score_predictions(valset, predictions, ScoringConfig(bootstrap_draws=0)).to_dict()
    returned = sum(len(predicted_spans(p)) for p in predictions)
    dropped = sum(getattr(p, "dropped", 0) or 0 for p in predictions)
    return {
        "questions": len(valset),
        **{key: numbers.get(key) for key in DEV_SCORE_KEYS},
        "dropped_span_rate": dropped / (dropped + returned) if dropped + returned else 0.0,
        "parse_failures": sum(bool(getattr(p, "parse_failed", False)) for p in predictions),
        "gated": sum(bool(getattr(p, "gated", False)) for p in predictions),
        "failed_predictions": sum(bool(getattr(p, "failed", False)) for p in predictions),
    }


def describe_data(data: OptimizationData) -> dict[str, Any]:
    return {
        "source": data.source,
        "fingerprint": data.fingerprint,  # of the train + dev questions used and their contracts
        "train_questions": len(data.trainset),
        "val_questions": len(data.valset),
        "train_contracts": len({e.contract_id for e in data.trainset}),
        "val_contracts": len({e.contract_id for e in data.valset}),
    }


def describe_program(compiled: Any, original: Any) -> dict[str, Any]:
    """Per predictor: demos and whether the instructions changed (MIPROv2 rewrites them)."""
    before = {name: p.signature.instructions for name, p in original.named_predictors()}
    return {
        name: {"demos": len(p.demos), "instructions_changed": p.signature.instructions != before.get(name)}
        for name, p in compiled.named_predictors()
    }


def optimize(config: OptimizeConfig) -> dict[str, Any]:
    """Compile, score and save; returns the manifest plus ``files`` and ``program`` (JSON-able)."""
    from clauseloop.data import load_cuad
    from clauseloop.engine.roles import make_lm
    from clauseloop.optimizers.saved import build_manifest, save_compiled
    from clauseloop.optimizers.teleprompters import Optimizer
    from clauseloop.program.qa import ContractQA, QAConfig
    from clauseloop.program.saved import read_manifest

    dataset = load_cuad(config.data)
    data = load_optimization_data(dataset, config)  # refuses bad data before any model loads
    qa_config = QAConfig(gate=config.gate)
    program = ContractQA(dataset.contracts, config=qa_config)
    out_dir = Path(config.out_dir)
    optimizer = Optimizer(
        config, student_lm=make_lm(config.student), teacher_lm=make_lm(config.teacher), cache_dir=out_dir / CACHE_DIR
    )
    compiled = optimizer.compile(
        program, trainset=data.trainset, valset=data.valset, held_out_contracts=data.held_out_contracts
    )
    logger.info("scoring the compiled program on %d validation questions", len(data.valset))
    scores = dev_scores(data.valset, optimizer.score(compiled, data.valset))
    manifest = build_manifest(
        config, data=describe_data(data), lm_usage=optimizer.usage(), dev_scores=scores,
        candidates=optimizer.stats.candidates, qa_config=asdict(qa_config),
    )
    manifest["program"] = describe_program(compiled, program)
    if optimizer.stats.instruction_proposals:
        manifest["instruction_proposals"] = optimizer.stats.instruction_proposals
    files = save_compiled(out_dir, compiled, manifest)
    logger.info("wrote %s and %s", files["program"], files["manifest"])
    return {**read_manifest(out_dir), "files": files}  # as written: strict JSON
