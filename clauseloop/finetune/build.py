"""One SFT dataset from three sources: CUAD's gold labels, teacher traces and grounded self-instruct.

``build_dataset(config)`` is what ``clauseloop finetune data`` runs. It reads the training split only (a dev or
test contract can never reach a row: :class:`~clauseloop.finetune.dataset.SFTDataset` refuses them), builds the
sources in order — gold (no LM), teacher traces, synthetic questions — appending to one JSONL file that a re-run
continues, and writes ``FILE.report.json``: rows per source and category, the NONE share, each filter's counts,
duplicates removed and the time spent. ``--limit-contracts N`` takes the first N train contracts by id, so a
small build and its later extension agree on which contracts come first.
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
from clauseloop.finetune.dataset import SFTDataset
from clauseloop.finetune.gold import GoldRowsConfig, build_gold_rows
from clauseloop.finetune.rows import SOURCES
from clauseloop.finetune.selfinstruct_config import SelfInstructConfig
from clauseloop.finetune.traces import TraceConfig, build_trace_rows

logger = logging.getLogger(__name__)

TRAIN_SPLIT = "train"
Progress = Callable[[str, str, int], None]  # (source, contract id, contracts in all) after each contract


@dataclass
class DataConfig:
    """What `clauseloop finetune data` builds; every default is the offline one."""

    out: str = field(default="runs/sft/train.jsonl", metadata={"help": "The dataset file (JSON lines)."})
    data: str | None = field(default=None, metadata={"help": "CUAD file; None: the demo contracts."})
    split: str = field(default=TRAIN_SPLIT, metadata={"help": "Only 'train': rows never come from dev or test."})
    limit_contracts: int | None = field(default=None, metadata={"help": "Only the first N train contracts (by id)."})
    sources: tuple[str, ...] = field(default=SOURCES, metadata={"help": "Which of gold, teacher, synthetic to build."})
    teacher: str = field(default="teacher", metadata={"help": "Teacher LM: a role or a model/LiteLLM string."})
    judge: str | None = field(default=None, metadata={"help": "Judge LM filtering synthetic questions (optional)."})
    program: str = field(default="zero-shot", metadata={"help": "The QA program the teacher runs: zero-shot or DIR."})
    gold: GoldRowsConfig = field(default_factory=GoldRowsConfig)
    traces: TraceConfig = field(default_factory=TraceConfig)
    synthetic: SelfInstructConfig = field(default_factory=SelfInstructConfig)

    def __post_init__(self) -> None:
        if self.split != TRAIN_SPLIT:
            raise ValueError(
                f"training rows come from the train split only (got --split {self.split}): dev and test stay "
                "unseen so their scores mean something"
            )
        unknown = set(self.sources) - set(SOURCES)
        if unknown or not self.sources:
            raise ValueError(f"unknown source(s) {sorted(unknown)}; choose from {', '.join(SOURCES)}")
        if self.synthetic.judge_threshold is not None and not self.judge:
            raise ValueError("a judge threshold needs a judge LM: pass --judge (a role or model string)")


def training_contracts(dataset: CuadDataset, limit: int | None) -> tuple[CuadDataset, set[str]]:
    """The train split (first ``limit`` contracts by id) and the ids of every contract that must not be used."""
    train = split_of(dataset, TRAIN_SPLIT)
    if not train.contracts:
        raise ValueError(f"{dataset.source} has no train contracts; pass a larger CUAD file with --data")
    chosen = sorted(train.contracts)[:limit] if limit else sorted(train.contracts)
    return train.subset(chosen), set(dataset.contracts) - set(train.contracts)


def _program(spec: str, train: CuadDataset):
    from clauseloop.program.evaluation import build_program

    return build_program(spec, train)


def build_source(source: str, sft: SFTDataset, train: CuadDataset, config: DataConfig, tick) -> int:
    from clauseloop.engine.roles import make_lm

    program = _program(config.program if source == "teacher" else "zero-shot", train)
    if source == "gold":
        return build_gold_rows(sft, train, program, config.gold, on_contract=tick)
    if source == "teacher":
        return build_trace_rows(sft, train, program, make_lm(config.teacher), config.traces, on_contract=tick)
    from clauseloop.finetune.selfinstruct import build_synthetic_rows

    judge = make_lm(config.judge) if config.judge else None
    return build_synthetic_rows(sft, train, program, make_lm(config.teacher), config.synthetic, judge_lm=judge,
                                on_contract=tick)


def build_dataset(config: DataConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Build (or continue) the dataset file; returns the report, also written next to it."""
    dataset = load_cuad(config.data)
    train, forbidden = training_contracts(dataset, config.limit_contracts)
    sft = SFTDataset(config.out, forbidden_contracts=forbidden)
    for source in config.sources:
        started = time.perf_counter()
        tick = None
        if progress:
            tick = lambda contract_id, source=source: progress(source, contract_id, len(train.contracts))  # noqa: E731
        try:
            build_source(source, sft, train, config, tick)
        finally:  # time spent counts across interrupted runs too: the report gives the whole build's cost
            sft.count(source, "seconds", round(time.perf_counter() - started, 1))
            sft.save_state()
    report = sft.report()
    report.update(config=_jsonable(config), data={"source": dataset.source, "fingerprint": dataset.fingerprint(),
                                                  "train_contracts": len(train.contracts)})
    write_json_atomic(Path(str(config.out) + ".report.json"), report)
    return report


def _jsonable(config: DataConfig) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(config), default=str))
