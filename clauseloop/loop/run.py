"""The main job on the embedded offline default (`clauseloop run`, `make run`).

It loads the contracts (the demo set unless told otherwise), prepares the local models, reviews one contract for
all 41 categories with the QA program on the student, and evaluates the program and the retrieval-only baseline
on the contracts with CUAD's official metric, writing each report under ``out_dir``. Then it runs the loop
(:mod:`clauseloop.loop.pipeline`) twice with small budgets: on the contracts minus the last ``arriving`` train
contracts, then again once those "arrive" — the second run re-indexes and builds SFT rows for the new contracts only,
tunes the student incrementally and shows the gate's decision. Its registry is ``out_dir/registry``, so the demo
never changes which model `clauseloop-student` means elsewhere.
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
    loop: bool = True  # run the loop twice, before and after contracts arrive
    arriving: int = 2  # train contracts held back from the first loop run
    loop_sft_steps: int = 4
    loop_dpo_steps: int = 2
    feedback_records: int = 3  # reviewer feedback that arrives with the new contracts
    loop_eval_limit: int = 41
    loop_retention_limit: int = 20


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


def run_main_job(config: RunConfig = RunConfig(), on_stage=None) -> dict:
    """Run the job and return a JSON-able report (the CLI prints it); ``on_stage`` sees each loop stage finish."""
    started = time.perf_counter()
    dataset = load_cuad(config.data)
    prepared = {name: asdict(prepare(name)) for name in (SMOLLM2, MINILM)}
    contract = pick_contract(dataset, config.contract)
    logger.info("reviewing %s (%d characters) for all categories", contract.id, len(contract.text))
    review = review_contract(contract, config.student)
    logger.info("evaluating %s", ", ".join(config.programs))
    report = {
        "config": asdict(config),
        "stats": dataset_stats(dataset),
        "models": prepared,
        "review": review,
        "evaluation": evaluate_programs(config),
    }
    if config.loop:
        report["loop"] = run_demo_loop(config, dataset, review, on_stage)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def data_without(source: str | Path, titles: set[str], target: Path) -> Path:
    """A copy of a CUADv1.json(.gz) file without the contracts titled ``titles``: the data before they arrive."""
    import gzip
    import json

    from clauseloop.data.atomic import write_json_atomic

    opener = gzip.open if str(source).endswith(".gz") else open
    with opener(source, "rt", encoding="utf-8") as handle:
        doc = json.load(handle)
    doc["data"] = [entry for entry in doc["data"] if entry.get("title") not in titles]
    return write_json_atomic(target, doc, indent=None)


def reviewer_feedback(review: dict, dataset: CuadDataset, database: Path, limit: int) -> Path:
    """Stand in for a reviewer of ``review``: a thumbs-down with CUAD's gold clause as the correction on the first
    ``limit`` categories where the student quoted something that is not the gold clause. A contract the store
    already has records of is left as it is, so a re-run adds nothing."""
    from clauseloop.feedback.records import contract_hash
    from clauseloop.feedback.store import FeedbackStore

    contract = dataset.contracts[review["contract"]]
    digest, added = contract_hash(contract.text), 0
    gold = {q.category: [a.text for a in q.answers] for q in dataset.questions if q.contract_id == contract.id}
    with FeedbackStore(database) as store:
        if store.list(contract_hash=digest, limit=1):  # written by an earlier run: the same reviewer, the same records
            return database
        for category, spans in sorted(review["spans"].items()):
            if added >= limit or not gold.get(category) or {s["text"] for s in spans} & set(gold[category]):
                continue
            added += 1
            store.add({"contract_hash": digest, "vote": "down", "category": category,
                       "spans": [{"text": s["text"], "start": s["start"], "end": s["end"]} for s in spans],
                       "corrected_spans": [{"text": text} for text in gold[category]], "user": "demo-reviewer",
                       "model_version": "clauseloop-student"})
    return database


def run_demo_loop(config: RunConfig, dataset: CuadDataset, review: dict, on_stage=None) -> list[dict]:
    """The loop before and after the last ``arriving`` train contracts arrive; one report per run."""
    from clauseloop.data import split_of
    from clauseloop.data.loaders import demo_path
    from clauseloop.loop.pipeline import LoopConfig, run_loop

    out = Path(config.out_dir)
    source = Path(config.data) if config.data else demo_path()
    arriving = set(sorted(split_of(dataset, "train").contracts)[-config.arriving:]) if config.arriving else set()
    runs = [source]
    if arriving and source.name.endswith((".json", ".json.gz")):  # other layouts: one loop run on the data as is
        runs.insert(0, data_without(source, arriving, out / "loop-data" / "before.json"))
    reports = []
    for number, data in enumerate(runs):
        feedback = None
        if number == len(runs) - 1 and config.feedback_records:  # feedback arrives with the new contracts
            feedback = str(reviewer_feedback(review, dataset, out / "feedback.db", config.feedback_records))
        loop_config = LoopConfig(out=str(out / "loop"), data=str(data), registry=str(out / "registry"),
                                 feedback=feedback, dpo_steps=config.loop_dpo_steps,
                                 eval_limit=config.loop_eval_limit, sft_steps=config.loop_sft_steps,
                                 batch_size=1, gradient_accumulation=2, retention_limit=config.loop_retention_limit,
                                 progress=False)  # small runs: the stage lines are their progress
        reports.append(run_loop(loop_config, on_stage=on_stage))
    return reports
