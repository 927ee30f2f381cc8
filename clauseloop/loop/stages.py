"""The bodies of the loop's stages. Each writes into the directory it is given and returns JSON-able outputs.

They are plain functions over the stages below (data, retrieval, program, finetune) so the loop in
:mod:`clauseloop.loop.pipeline` reads as the sequence it is; fingerprints and skipping live in
:mod:`clauseloop.loop.runner`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clauseloop.data import CuadDataset, split_of
from clauseloop.data.atomic import write_json_atomic

logger = logging.getLogger(__name__)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def contract_hashes(dataset: CuadDataset) -> dict[str, str]:
    """Content hash per contract id: what decides whether a contract is new or changed."""
    return {cid: text_hash(contract.text) for cid, contract in sorted(dataset.contracts.items())}


def file_hash(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ModelRef:
    """A student version the loop compares: registry id (``shipped`` for the package's adapter), base, adapter."""

    version: str
    base_model: str
    adapter: str | None
    contracts: dict[str, str] = field(default_factory=dict)  # contract id → hash of what trained it (lineage)
    feedback_seen: int = 0  # the highest feedback record id its preference training used

    @property
    def model(self) -> str:
        return f"{self.base_model}+{self.adapter}" if self.adapter else self.base_model

    @property
    def fingerprint(self) -> str:
        weights = file_hash(Path(self.adapter) / "adapter_model.safetensors") if self.adapter else "none"
        return f"{self.base_model}:{weights}"


def data_summary(dataset: CuadDataset) -> dict[str, Any]:
    """Contracts per split and the category mix: the reference the next run's drift check compares against."""
    mix: dict[str, int] = {}
    for question in dataset.questions:
        if not question.is_impossible:
            mix[question.category] = mix.get(question.category, 0) + 1
    return {"source": str(dataset.source), "fingerprint": dataset.fingerprint(), "contracts": len(dataset.contracts),
            "splits": {name: len(split_of(dataset, name).contracts) for name in ("train", "dev", "test")},
            "answerable_by_category": mix}


def build_index(dataset: CuadDataset, directory: Path, *, progress: bool = False) -> dict[str, Any]:
    """Update the loop's passage index: unchanged contracts keep their embeddings, only new text is embedded."""
    from clauseloop.retrieval.embedding import Embedder
    from clauseloop.retrieval.index import IndexConfig
    from clauseloop.retrieval.store import build_index_dir

    config = IndexConfig()
    embedder = Embedder(config.embedder)
    index = build_index_dir(dataset.contracts.values(), directory, config, embedder=embedder, progress=progress)
    return {"directory": str(directory), "passages": len(index.passages), "texts_embedded": embedder.texts_encoded}


def build_gold_rows_for(dataset: CuadDataset, contract_ids: list[str], none_share: float,
                        directory: Path) -> dict[str, Any]:
    """SFT rows from CUAD's labels of ``contract_ids`` only (resumable per contract); no other contract can leak in."""
    from clauseloop.finetune.dataset import SFTDataset
    from clauseloop.finetune.gold import GoldRowsConfig, build_gold_rows
    from clauseloop.program.evaluation import build_program

    chosen = dataset.subset(contract_ids)
    rows = SFTDataset(directory / "rows.jsonl", forbidden_contracts=set(dataset.contracts) - set(contract_ids))
    build_gold_rows(rows, chosen, build_program("zero-shot", chosen), GoldRowsConfig(none_share=none_share))
    rows.save_state()
    count = sum(1 for line in open(rows.path, encoding="utf-8") if line.strip()) if rows.path.exists() else 0
    return {"file": str(rows.path), "rows": count, "contracts": contract_ids}


def evaluate_model(model: ModelRef, data: str | None, question_ids: list[str], cache: Path,
                   progress: bool) -> dict[str, Any]:
    """CUAD scores of ``model`` on the fixed questions, with the nbest file the gate pairs; kept per model."""
    from clauseloop.program.evaluation import EvalConfig, evaluate

    directory = cache / text_hash(json.dumps([model.fingerprint, question_ids]))
    summary_file = directory / "summary.json"
    if summary_file.exists():
        return json.loads(summary_file.read_text(encoding="utf-8"))
    report = evaluate(EvalConfig(program="zero-shot", data=data, question_ids=tuple(question_ids), lm=model.model,
                                 export_nbest=str(directory / "nbest.json"), out_dir=str(directory),
                                 progress=progress))
    summary = {"model": model.model, "version": model.version, "aupr": report["overall"]["aupr"],
               "f1": report["overall"]["f1"],
               "dropped_span_rate": report["hallucination_rate"], "nbest": str(directory / "nbest.json"),
               "seconds": report["seconds"]}
    write_json_atomic(summary_file, summary)
    return summary


def split_feedback(database: str | None, seen_id: int) -> tuple[list, list]:
    """(records up to ``seen_id``: what the current model's preference training used, records stored after it);
    both empty without a database."""
    if not database:
        return [], []
    from clauseloop.feedback.store import FeedbackStore

    if not Path(database).is_file():
        raise FileNotFoundError(f"{database}: no feedback database there; `clauseloop serve` keeps one at "
                                "runs/serve/clauseloop.db, and `clauseloop feedback import FILE --db PATH` makes one")
    with FeedbackStore(database) as store:
        records = store.list()
    return [r for r in records if r.id <= seen_id], [r for r in records if r.id > seen_id]


def build_feedback_pairs(records: list, dataset: CuadDataset, directory: Path) -> dict[str, Any]:
    from clauseloop.feedback.pairs import write_feedback_pairs

    return write_feedback_pairs(records, dataset, directory / "pairs.jsonl")


def measure_forgetting(model: ModelRef, limit: int | None, directory: Path) -> dict[str, Any]:
    from clauseloop.finetune.retention import RetentionConfig, measure_retention

    report = measure_retention(model.model, RetentionConfig(limit=limit))
    write_json_atomic(directory / "retention.json", report.to_dict())
    return {"accuracy_drop": report.accuracy_drop, "kl_per_token": report.kl_per_token,
            "regressions": len(report.regressions)}
