"""`clauseloop loop`: data → index → SFT data → SFT → evaluate → retention → gate → promote, re-running only what
changed.

The current model is the registry's promoted version (the shipped student before any promotion). New or changed
train contracts — those whose content hash is not in the current model's lineage — get SFT rows, and the student
is tuned *incrementally*: ``--from`` the current adapter, on the new rows plus replay. The candidate and the current
model answer a fixed evaluation set (chosen on the first run, stored in ``OUT/eval-set.json``, never trained on) and
the candidate runs the retention suite; the promotion gate (:mod:`clauseloop.loop.gate`) decides, and the registry
records the version with its lineage, metrics and the gate's evidence. With no new contracts the training stages
are skipped and say why. Preference stages (feedback → pairs → DPO) are not part of the loop yet.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from clauseloop.data import CuadDataset, load_cuad, split_of
from clauseloop.data.atomic import write_json_atomic
from clauseloop.loop import stages
from clauseloop.loop.gate import GateConfig, decide
from clauseloop.loop.runner import StageRecord, StageRunner, directory_lock
from clauseloop.loop.stages import ModelRef

logger = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    """One loop run; every default is the offline one (the CLI reads defaults and help from here)."""

    out: str = field(default="runs/loop", metadata={"help": "Loop directory: stage artifacts, state, reports."})
    data: str | None = field(default=None, metadata={"help": "CUAD file; None: the demo contracts."})
    registry: str | None = field(default=None, metadata={"help": "Registry directory (default $CLAUSELOOP_REGISTRY "
                                                                  "or runs/registry)."})
    eval_split: str = field(default="dev", metadata={"help": "Split the fixed evaluation set is drawn from."})
    eval_limit: int | None = field(default=41, metadata={"help": "Questions in the fixed evaluation set."})
    none_share: float = field(default=0.2, metadata={"help": "Share of NONE rows among new SFT rows."})
    sft_steps: int = field(default=8, metadata={"help": "Optimizer steps of each incremental SFT run."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of incremental SFT (low: "
                                                                  "the adapter already knows the task)."})
    batch_size: int = field(default=2, metadata={"help": "Rows per forward pass."})
    gradient_accumulation: int = field(default=4, metadata={"help": "Forward passes per optimizer step."})
    replay: float = field(default=0.2, metadata={"help": "General replay rows per new domain row."})
    retention_limit: int | None = field(default=40, metadata={"help": "Retention prompts checked per candidate."})
    gate: GateConfig = field(default_factory=GateConfig)
    progress: bool = field(default=True, metadata={"help": "Progress bars of the evaluation stage."})


def current_model(registry) -> ModelRef:
    """The promoted version, or the shipped student when nothing is promoted yet."""
    from clauseloop.models import STUDENT
    from clauseloop.models.store import resolve_alias

    version = registry.promoted()
    if version is not None:
        return ModelRef(version.id, version.base_model, version.adapter, version.data.get("contracts", {}))
    base, adapter = resolve_alias(STUDENT)
    return ModelRef("shipped", base, adapter)


def fixed_eval_set(directory: Path, dataset: CuadDataset, config: LoopConfig) -> list[str]:
    """The evaluation questions of every run in ``directory``: drawn once, then kept, so gates stay comparable."""
    from clauseloop.program.evaluation import stratified_questions

    file = directory / "eval-set.json"
    if file.exists():
        ids = json.loads(file.read_text(encoding="utf-8"))["question_ids"]
        known = {question.id for question in dataset.questions}
        if missing := [qid for qid in ids if qid not in known]:
            raise ValueError(f"{len(missing)} questions of the fixed evaluation set ({file}) are not in the data "
                             f"(e.g. {missing[0]!r}); restore those contracts, or use a new --out to start afresh")
        return ids
    questions = stratified_questions(split_of(dataset, config.eval_split).questions, config.eval_limit)
    if not questions:
        raise ValueError(f"the {config.eval_split} split of {dataset.source} has no questions to evaluate on; "
                         "pass more contracts with --data or another --eval-split")
    ids = [question.id for question in questions]
    write_json_atomic(file, {"split": config.eval_split, "question_ids": ids})
    return ids


def new_training_contracts(dataset: CuadDataset, hashes: dict[str, str], current: ModelRef,
                           eval_ids: list[str]) -> dict[str, str]:
    """Train contracts whose text the current model was not trained on (never one of the evaluation set)."""
    held_out = {question.contract_id for question in dataset.questions if question.id in set(eval_ids)}
    train = set(split_of(dataset, "train").contracts) - held_out
    return {cid: hashes[cid] for cid in sorted(train) if current.contracts.get(cid) != hashes[cid]}


def run_loop(config: LoopConfig = LoopConfig(), on_stage: Callable[[StageRecord], None] | None = None) -> dict:
    """Run the loop once; returns the report (also written to ``OUT/report.json``)."""
    out = Path(config.out)
    with directory_lock(out):
        started = time.perf_counter()
        runner = StageRunner(out, on_stage)
        report = _run_stages(runner, config)
        report.update(stages=[asdict(record) for record in runner.records],
                      seconds=round(time.perf_counter() - started, 2))
        write_json_atomic(out / "report.json", report)
    return report


def _run_stages(runner: StageRunner, config: LoopConfig) -> dict[str, Any]:
    from clauseloop.models.registry import Registry

    dataset = load_cuad(config.data)
    hashes = stages.contract_hashes(dataset)
    registry = Registry(config.registry)
    current = current_model(registry)
    eval_ids = fixed_eval_set(runner.directory, dataset, config)
    runner.run("data", {"contracts": hashes}, lambda _: stages.data_summary(dataset))
    runner.run("index", {"contracts": hashes},
               lambda _: stages.build_index(dataset, runner.directory / "index", progress=config.progress))
    new = new_training_contracts(dataset, hashes, current, eval_ids)
    report = {"config": asdict(config), "current": current.version, "new_contracts": sorted(new)}
    if not new:
        for name in ("sft-data", "sft", "evaluate", "retention", "gate"):
            runner.skip(name, f"no new training contracts for {current.version}")
        return report
    rows = runner.run("sft-data", {"contracts": new, "none_share": config.none_share},
                      lambda d: stages.build_gold_rows_for(dataset, sorted(new), config.none_share, d)).outputs
    if not rows["rows"]:
        for name in ("sft", "evaluate", "retention", "gate"):
            runner.skip(name, "the new contracts gave no SFT rows")
        return report
    candidate = _train_candidate(runner, config, current, rows, {**current.contracts, **new})
    report["decision"] = _evaluate_and_gate(runner, config, registry, current, candidate, eval_ids, dataset)
    return report


def _train_candidate(runner: StageRunner, config: LoopConfig, current: ModelRef, rows: dict,
                     lineage: dict[str, str]) -> ModelRef:
    from clauseloop.finetune.sft import SFTRunConfig, train_sft

    settings = {"steps": config.sft_steps, "lr": config.learning_rate, "batch": config.batch_size,
                "accumulation": config.gradient_accumulation, "replay": config.replay}

    def train(directory: Path) -> dict[str, Any]:
        result = train_sft(SFTRunConfig(
            data=rows["file"], out=str(directory), base_model=current.base_model, from_adapter=current.adapter,
            max_steps=config.sft_steps, learning_rate=config.learning_rate, batch_size=config.batch_size,
            gradient_accumulation=config.gradient_accumulation, replay=config.replay,
            resume=(directory / "checkpoints").is_dir()))
        return {"adapter": result.adapter_dir, "metrics": result.metrics}

    inputs = {"rows": stages.file_hash(rows["file"]), "parent": current.fingerprint, **settings}
    outputs = runner.run("sft", inputs, train).outputs
    return ModelRef("candidate", current.base_model, outputs["adapter"], lineage)


def _evaluate_and_gate(runner: StageRunner, config: LoopConfig, registry, current: ModelRef, candidate: ModelRef,
                       eval_ids: list[str], dataset: CuadDataset) -> dict[str, Any]:
    cache = runner.directory / "evaluations"
    models = {"current": current.fingerprint, "candidate": candidate.fingerprint, "questions": eval_ids}
    scores = runner.run("evaluate", models, lambda _: {
        name: stages.evaluate_model(model, config.data, eval_ids, cache, config.progress)
        for name, model in (("current", current), ("candidate", candidate))}).outputs
    retention = runner.run("retention", {"candidate": candidate.fingerprint, "limit": config.retention_limit},
                           lambda d: stages.measure_forgetting(candidate, config.retention_limit, d)).outputs
    gate_inputs = {**models, "retention": retention, "gate": asdict(config.gate)}
    return runner.run("gate", gate_inputs, lambda _: _gate(config, registry, current, candidate, scores,
                                                          retention, eval_ids, dataset)).outputs


def _gate(config, registry, current: ModelRef, candidate: ModelRef, scores: dict, retention: dict,
          eval_ids: list[str], dataset: CuadDataset) -> dict[str, Any]:
    from clauseloop.program.export import read_nbest
    from clauseloop.program.types import GoldQuestion

    by_id = {question.id: question for question in dataset.questions}
    golds = [GoldQuestion.from_question(by_id[qid]) for qid in eval_ids]
    decision = decide(golds, read_nbest(scores["candidate"]["nbest"]), read_nbest(scores["current"]["nbest"]),
                      config.gate, retention_drop=retention["accuracy_drop"],
                      dropped_rates=(scores["candidate"]["dropped_span_rate"], scores["current"]["dropped_span_rate"]))
    version = _register(registry, current, candidate, scores, retention)
    if decision.promote:
        registry.promote(version.id, decision.to_dict())
    else:
        registry.refuse(version.id, decision.to_dict())
    logger.info("gate: %s %s", "promoted" if decision.promote else "refused", version.id)
    return {"version": version.id, **decision.to_dict()}


def _register(registry, current: ModelRef, candidate: ModelRef, scores: dict, retention: dict):
    """The candidate's registry entry; a gate killed after registering finds and reuses it."""
    fingerprint = candidate.fingerprint
    for version in registry.versions:
        if version.data.get("fingerprint") == fingerprint:
            return version
    return registry.add(candidate.base_model, candidate.adapter, parent=None if current.version == "shipped"
                        else current.version, data={"fingerprint": fingerprint, "contracts": candidate.contracts,
                                                    "parent_model": current.model},
                        stages=["sft-data", "sft", "evaluate", "retention", "gate"],
                        metrics={"aupr": scores["candidate"]["aupr"], "f1": scores["candidate"]["f1"],
                                 "dropped_span_rate": scores["candidate"]["dropped_span_rate"],
                                 "retention_drop": retention["accuracy_drop"]})
