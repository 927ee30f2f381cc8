"""`clauseloop loop`: data → index → drift → SFT data → SFT → pairs → DPO → evaluate → retention → gate → promote,
re-running only what changed.

The current model is the registry's promoted version (the shipped student before any promotion). New or changed
train contracts — those whose content hash is not in the current model's lineage — get SFT rows, and the student
is tuned *incrementally*: ``--from`` the current adapter, on the new rows plus replay. The candidate and the current
model answer a fixed evaluation set (chosen on the first run, stored in ``OUT/eval-set.json``, never trained on) and
the candidate runs the retention suite; the promotion gate (:mod:`clauseloop.loop.gate`) decides, and the registry
records the version with its lineage, metrics and the gate's evidence. New feedback records (``--feedback``)
become preference pairs (:mod:`clauseloop.feedback.pairs`) and a DPO run continues the SFT candidate, or the
current adapter when only feedback changed. The drift check (:mod:`clauseloop.loop.drift`) compares the new
contracts and feedback with the current model's reference and gives the affected training stage a larger budget.
A stage with nothing to do is skipped and says why.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from clauseloop.data import CuadDataset, load_cuad, split_of
from clauseloop.data.atomic import write_json_atomic
from clauseloop.loop import stages
from clauseloop.loop.drift import DriftConfig, check_drift
from clauseloop.loop.gate import GateConfig, decide
from clauseloop.loop.runner import StageRecord, StageRunner, directory_lock
from clauseloop.loop.stages import ModelRef

logger = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    """One loop run; every default is the offline one (the CLI reads defaults and help from here)."""

    out: str = field(default="runs/loop", metadata={"help": "Loop directory: stage artifacts, state, reports."})
    data: str | None = field(default=None, metadata={"help": "CUAD file; None: the demo contracts."})
    feedback: str | None = field(default=None, metadata={"help": "Feedback database (SQLite) whose new records "
                                                                  "become preference pairs for DPO."})
    registry: str | None = field(default=None, metadata={"help": "Registry directory (default $CLAUSELOOP_REGISTRY "
                                                                  "or runs/registry)."})
    eval_split: str = field(default="dev", metadata={"help": "Split the fixed evaluation set is drawn from."})
    eval_limit: int | None = field(default=41, metadata={"help": "Questions in the fixed evaluation set."})
    none_share: float = field(default=0.2, metadata={"help": "Share of NONE rows among new SFT rows."})
    sft_steps: int = field(default=8, metadata={"help": "Most optimizer steps of an incremental SFT run (fewer when "
                                                        "one pass over the new rows takes fewer)."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of incremental SFT (low: "
                                                                  "the adapter already knows the task)."})
    batch_size: int = field(default=2, metadata={"help": "Rows per forward pass."})
    gradient_accumulation: int = field(default=4, metadata={"help": "Forward passes per optimizer step."})
    replay: float = field(default=0.2, metadata={"help": "General replay rows per new domain row."})
    dpo_steps: int = field(default=4, metadata={"help": "Optimizer steps of each DPO run on feedback pairs."})
    retention_limit: int | None = field(default=40, metadata={"help": "Retention prompts checked per candidate."})
    gate: GateConfig = field(default_factory=GateConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    progress: bool = field(default=True, metadata={"help": "Progress bars of the evaluation stage."})


def load_loop_config(path: str | Path, **overrides: Any) -> LoopConfig:
    """A LoopConfig from the ``[loop]`` table of a TOML file (``[loop.gate]`` and ``[loop.drift]`` inside it), then
    ``overrides``. The same file may hold ``[roles]``: one file describes a loop on one machine or on many."""
    import tomllib
    from dataclasses import fields

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"loop config {path} does not exist; see docs/loop.md for an example")
    table = dict(tomllib.loads(path.read_text(encoding="utf-8")).get("loop", {}))
    nested = {"gate": GateConfig, "drift": DriftConfig}
    known = {item.name for item in fields(LoopConfig)}
    if unknown := set(table) - known:
        raise ValueError(f"{path}: unknown [loop] setting(s) {sorted(unknown)}; settings are {sorted(known)}")
    for name, kind in nested.items():
        if name in table:
            valid = {item.name for item in fields(kind)}
            if unknown := set(table[name]) - valid:
                raise ValueError(f"{path}: unknown [loop.{name}] setting(s) {sorted(unknown)}; "
                                 f"settings are {sorted(valid)}")
            table[name] = kind(**table[name])
    return LoopConfig(**{**table, **overrides})


def current_model(registry) -> ModelRef:
    """The promoted version, or the shipped student when nothing is promoted yet."""
    from clauseloop.models import STUDENT
    from clauseloop.models.store import resolve_alias

    version = registry.promoted()
    if version is not None:
        return ModelRef(version.id, version.base_model, version.adapter, version.data.get("contracts", {}),
                        version.data.get("feedback_seen", 0))
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


def training_contracts(dataset: CuadDataset, eval_ids: list[str]) -> list[str]:
    """Train-split contracts, never one of the evaluation set."""
    evaluated = set(eval_ids)
    held_out = {question.contract_id for question in dataset.questions if question.id in evaluated}
    return sorted(set(split_of(dataset, "train").contracts) - held_out)


def new_training_contracts(dataset: CuadDataset, hashes: dict[str, str], current: ModelRef,
                           eval_ids: list[str]) -> dict[str, str]:
    """Training contracts whose text the current model was not trained on."""
    return {cid: hashes[cid] for cid in training_contracts(dataset, eval_ids)
            if current.contracts.get(cid) != hashes[cid]}


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
    seen, feedback = stages.split_feedback(config.feedback, current.feedback_seen)
    drift = _drift(runner, config, dataset, current, new, seen, feedback, eval_ids)
    report = {"config": asdict(config), "current": current.version, "new_contracts": sorted(new),
              "new_feedback": len(feedback), "drift": drift}
    candidate = _sft_candidate(runner, config, dataset, current, new, drift)
    candidate = _dpo_candidate(runner, config, dataset, current, candidate, feedback, drift)
    if candidate is None:
        for name in ("evaluate", "retention", "gate"):
            runner.skip(name, f"no candidate: nothing new to train {current.version} on")
        return report
    report["decision"] = _evaluate_and_gate(runner, config, registry, current, candidate, eval_ids, dataset)
    return report


def _drift(runner: StageRunner, config: LoopConfig, dataset: CuadDataset, current: ModelRef, new: dict[str, str],
           seen: list, feedback: list, eval_ids: list[str]) -> dict[str, Any]:
    """The drift report against the current model's reference (its lineage, or the first run's train contracts)."""
    if not new and not feedback:
        runner.skip("drift", f"no new contracts or feedback since {current.version}")
        return {"flagged": [], "data_drift": False, "decay": False}
    lineage = [cid for cid in current.contracts if cid in dataset.contracts]
    reference_contracts = lineage or training_contracts(dataset, eval_ids)
    inputs = {"reference": current.version, "contracts": new, "feedback": [record.id for record in feedback],
              "drift": asdict(config.drift)}
    return runner.run("drift", inputs, lambda _: check_drift(
        runner.directory, dataset, current.version, reference_contracts, seen, sorted(new), feedback,
        config.drift)).outputs


def _sft_candidate(runner: StageRunner, config: LoopConfig, dataset: CuadDataset, current: ModelRef,
                   new: dict[str, str], drift: dict[str, Any]) -> ModelRef | None:
    """SFT rows for the new contracts, then the current adapter tuned on them (None when there is nothing new)."""
    if not new:
        for name in ("sft-data", "sft"):
            runner.skip(name, f"no new training contracts for {current.version}")
        return None
    rows = runner.run("sft-data", {"contracts": new, "none_share": config.none_share},
                      lambda d: stages.build_gold_rows_for(dataset, sorted(new), config.none_share, d)).outputs
    if not rows["rows"]:
        runner.skip("sft", "the new contracts gave no SFT rows")
        return None
    # at most one pass over the new rows (and their replay): one new contract costs a step or two, not the cap
    one_pass = math.ceil(rows["rows"] * (1 + config.replay) / (config.batch_size * config.gradient_accumulation))
    steps = min(config.sft_steps, one_pass) * (config.drift.budget_factor if drift["data_drift"] else 1)
    return _train_candidate(runner, config, current, rows, {**current.contracts, **new}, steps)


def _dpo_candidate(runner: StageRunner, config: LoopConfig, dataset: CuadDataset, current: ModelRef,
                   candidate: ModelRef | None, feedback: list, drift: dict[str, Any]) -> ModelRef | None:
    """Pairs from the new feedback, then DPO on the SFT candidate (or the current model); else ``candidate``."""
    from dataclasses import replace

    from clauseloop.finetune.dpo import DPORunConfig, train_dpo

    if not feedback:
        for name in ("pairs", "dpo"):
            runner.skip(name, "no new feedback" if config.feedback else "no feedback database (--feedback)")
        return candidate
    start = candidate or current
    ids = [record.id for record in feedback]
    pairs = runner.run("pairs", {"feedback": ids, "contracts": stages.contract_hashes(dataset)},
                       lambda d: stages.build_feedback_pairs(feedback, dataset, d)).outputs
    if not pairs["pairs"]:
        runner.skip("dpo", f"the {len(feedback)} new feedback record(s) gave no preference pairs")
        return candidate

    steps = config.dpo_steps * (config.drift.budget_factor if drift["decay"] else 1)

    def train(directory: Path) -> dict[str, Any]:
        result = train_dpo(DPORunConfig(pairs=pairs["file"], out=str(directory), base_model=start.base_model,
                                        from_adapter=start.adapter, max_steps=steps, batch_size=config.batch_size,
                                        gradient_accumulation=config.gradient_accumulation,
                                        resume=(directory / "checkpoints").is_dir()))
        return {"adapter": result.adapter_dir, "metrics": result.metrics}

    inputs = {"pairs": stages.file_hash(pairs["file"]), "start": start.fingerprint, "steps": steps,
              "batch": config.batch_size, "accumulation": config.gradient_accumulation}
    outputs = runner.run("dpo", inputs, train).outputs
    return replace(start, version="candidate", adapter=outputs["adapter"], feedback_seen=max(ids))


def _train_candidate(runner: StageRunner, config: LoopConfig, current: ModelRef, rows: dict,
                     lineage: dict[str, str], steps: int) -> ModelRef:
    from clauseloop.finetune.sft import SFTRunConfig, train_sft

    settings = {"steps": steps, "lr": config.learning_rate, "batch": config.batch_size,
                "accumulation": config.gradient_accumulation, "replay": config.replay}

    def train(directory: Path) -> dict[str, Any]:
        result = train_sft(SFTRunConfig(
            data=rows["file"], out=str(directory), base_model=current.base_model, from_adapter=current.adapter,
            max_steps=steps, learning_rate=config.learning_rate, batch_size=config.batch_size,
            gradient_accumulation=config.gradient_accumulation, replay=config.replay,
            resume=(directory / "checkpoints").is_dir()))
        return {"adapter": result.adapter_dir, "metrics": result.metrics}

    inputs = {"rows": stages.file_hash(rows["file"]), "parent": current.fingerprint, **settings}
    outputs = runner.run("sft", inputs, train).outputs
    return ModelRef("candidate", current.base_model, outputs["adapter"], lineage, current.feedback_seen)


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
    made_by = [record.name for record in runner.records  # ran now, or finished earlier with these inputs
               if record.name in ("sft-data", "sft", "pairs", "dpo") and record.fingerprint]
    return runner.run("gate", gate_inputs, lambda _: _gate(config, registry, current, candidate, scores,
                                                          retention, eval_ids, dataset, made_by)).outputs


def _gate(config, registry, current: ModelRef, candidate: ModelRef, scores: dict, retention: dict,
          eval_ids: list[str], dataset: CuadDataset, stages_ran: list[str]) -> dict[str, Any]:
    from clauseloop.program.export import read_nbest
    from clauseloop.program.types import GoldQuestion

    by_id = {question.id: question for question in dataset.questions}
    golds = [GoldQuestion.from_question(by_id[qid]) for qid in eval_ids]
    decision = decide(golds, read_nbest(scores["candidate"]["nbest"]), read_nbest(scores["current"]["nbest"]),
                      config.gate, retention_drop=retention["accuracy_drop"],
                      dropped_rates=(scores["candidate"]["dropped_span_rate"], scores["current"]["dropped_span_rate"]))
    version = _register(registry, current, candidate, scores, retention, stages_ran)
    if decision.promote:
        registry.promote(version.id, decision.to_dict())
    else:
        registry.refuse(version.id, decision.to_dict())
    logger.info("gate: %s %s", "promoted" if decision.promote else "refused", version.id)
    return {"version": version.id, **decision.to_dict()}


def _register(registry, current: ModelRef, candidate: ModelRef, scores: dict, retention: dict,
              stages_ran: list[str]):
    """The candidate's registry entry; a gate killed after registering finds and reuses it."""
    fingerprint = candidate.fingerprint
    for version in registry.versions:
        if version.data.get("fingerprint") == fingerprint:
            return version
    return registry.add(candidate.base_model, candidate.adapter, parent=None if current.version == "shipped"
                        else current.version, data={"fingerprint": fingerprint, "contracts": candidate.contracts,
                                                    "feedback_seen": candidate.feedback_seen,
                                                    "parent_model": current.model},
                        stages=stages_ran,
                        metrics={"aupr": scores["candidate"]["aupr"], "f1": scores["candidate"]["f1"],
                                 "dropped_span_rate": scores["candidate"]["dropped_span_rate"],
                                 "retention_drop": retention["accuracy_drop"]})
