"""The main job on the embedded offline default (`clauseloop run`, `make run`).

It loads the contracts (the demo set unless told otherwise), prepares the local models, reviews one contract for
all 41 categories with the QA program on the student, and evaluates the program and the retrieval-only baseline
on the contracts with CUAD's official metric, writing each report under ``out_dir``. Later stages (optimization,
distillation, alignment) are added here as they land.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from clauseloop.data import Contract, CuadDataset, load_cuad
from clauseloop.data.stats import dataset_stats
from clauseloop.models import MINILM, SMOLLM2, prepare

logger = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """Settings of the main job; every default is the offline one."""

    data: str | None = None  # None: the demo contracts shipped in the package
    student: str = "student"  # the answering LM: a role or a model string (see clauseloop.engine.roles)
    contract: str | None = None  # id of the contract to review; None: the first one by id
    split: str = "all"  # questions evaluated (the demo set is small: all of it)
    eval_limit: int | None = 123  # questions per evaluation, stratified by category (3 each); None: all
    programs: tuple[str, ...] = ("retrieval", "zero-shot")
    out_dir: str = "runs/main"
    progress: bool = True


def pick_contract(dataset: CuadDataset, contract_id: str | None) -> Contract:
    if contract_id is None:
        return dataset.contracts[min(dataset.contracts)]
    if contract_id not in dataset.contracts:
        raise KeyError(f"no contract {contract_id!r} in {dataset.source}; ids start with {min(dataset.contracts)!r}")
    return dataset.contracts[contract_id]


def review_contract(contract: Contract, lm_name: str) -> dict:
    """All categories of one contract through ``ContractQA.review``: the spans found per category, and the time."""
    import dspy

    from clauseloop.engine.roles import make_lm
    from clauseloop.program.qa import ContractQA

    program = ContractQA({contract.id: contract})
    started = time.perf_counter()
    with dspy.context(lm=make_lm(lm_name)):
        predictions = program.review(contract)
    return {
        "contract": contract.id,
        "chars": len(contract.text),
        "seconds": round(time.perf_counter() - started, 1),
        "spans": {
            category: [span.to_dict() for span in prediction.spans]
            for category, prediction in predictions.items()
            if prediction.spans
        },
        "dropped_spans": sum(prediction.dropped for prediction in predictions.values()),
        "gated": sorted(c for c, prediction in predictions.items() if getattr(prediction, "gated", False)),
    }


def evaluate_programs(config: RunConfig) -> dict:
    """Headline numbers of each program's evaluation; the full reports are written under ``out_dir``."""
    from clauseloop.program.evaluation import EvalConfig, evaluate

    results = {}
    for program in config.programs:
        report = evaluate(
            EvalConfig(
                program=program, data=config.data, split=config.split, limit=config.eval_limit, lm=config.student,
                out_dir=str(Path(config.out_dir) / f"eval-{program}"), progress=config.progress,
            )
        )
        results[program] = {
            "questions": report["data"]["questions"],
            **{key: report["overall"].get(key) for key in ("aupr", "prec_at_80_recall", "f1", "no_answer_accuracy")},
            "hallucination_rate": report["hallucination_rate"],
            "questions_per_second": report["questions_per_second"],
            "report": report["files"]["markdown"],
        }
    return results


def run_main_job(config: RunConfig = RunConfig()) -> dict:
    """Run the job and return a JSON-able report (the CLI prints it)."""
    started = time.perf_counter()
    dataset = load_cuad(config.data)
    prepared = {name: asdict(prepare(name)) for name in (SMOLLM2, MINILM)}
    contract = pick_contract(dataset, config.contract)
    logger.info("reviewing %s (%d characters) for all categories", contract.id, len(contract.text))
    review = review_contract(contract, config.student)
    logger.info("evaluating %s", ", ".join(config.programs))
    return {
        "config": asdict(config),
        "stats": dataset_stats(dataset),
        "models": prepared,
        "review": review,
        "evaluation": evaluate_programs(config),
        "seconds": round(time.perf_counter() - started, 1),
    }
