"""The loop end to end with the real SmolLM2 on the demo contracts, with tiny budgets: a first run tunes and
promotes, a re-run skips everything, feedback alone runs only pairs → DPO → evaluate → gate, a new contract
re-runs only what it touches, and a candidate trained with a destructive learning rate is refused by the gate."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from clauseloop.data.loaders import demo_path
from clauseloop.loop.pipeline import LoopConfig, run_loop
from clauseloop.models import STUDENT
from clauseloop.models.registry import Registry
from clauseloop.models.store import resolve_alias

pytestmark = pytest.mark.real_model
HELD_BACK = "SUMMITPEAKOUTFITTERS_09_17_2018-EX-10.4-CO-BRANDING AGREEMENT"


def tiny(tmp_path, data, learning_rate: float) -> LoopConfig:
    return LoopConfig(out=str(tmp_path / "loop"), data=str(data), registry=str(tmp_path / "registry"),
                      eval_limit=4, sft_steps=2, dpo_steps=1, batch_size=1, gradient_accumulation=1,
                      learning_rate=learning_rate, retention_limit=6, progress=False)


def statuses(report) -> dict[str, str]:
    return {stage["name"]: stage["status"] for stage in report["stages"]}


def test_the_loop_promotes_skips_reruns_incrementally_and_refuses_a_destroyed_candidate(
        tmp_path, smollm2_dir, monkeypatch):
    monkeypatch.setenv("CLAUSELOOP_REGISTRY", str(tmp_path / "registry"))
    demo = json.loads(demo_path().read_text())
    demo["data"] = [doc for doc in demo["data"] if doc["title"] != HELD_BACK]
    fewer = tmp_path / "fewer.json"
    fewer.write_text(json.dumps(demo))

    first = run_loop(tiny(tmp_path, fewer, 1e-6))
    assert HELD_BACK not in first["new_contracts"] and not first["drift"]["flagged"]
    assert {name for name, status in statuses(first).items() if status != "ran"} == {"pairs", "dpo"}
    assert first["decision"]["promote"], first["decision"]["reasons"]
    assert resolve_alias(STUDENT)[1] == Registry().get("v1").adapter

    started = time.perf_counter()
    again = run_loop(tiny(tmp_path, fewer, 1e-6))
    assert set(statuses(again).values()) == {"skipped"} and "decision" not in again, statuses(again)
    assert time.perf_counter() - started < 0.1 * first["seconds"]

    with_feedback = replace(tiny(tmp_path, fewer, 1e-6), feedback=str(thumbs_down(tmp_path, fewer)))
    rated = run_loop(with_feedback)
    assert rated["new_contracts"] == [] and rated["new_feedback"] == 3
    assert rated["drift"]["decay"]  # three thumbs-down out of three
    ran = {name for name, status in statuses(rated).items() if status == "ran"}
    assert ran == {"drift", "pairs", "dpo", "evaluate", "retention", "gate"}
    assert Registry().get(rated["decision"]["version"]).stages == ["pairs", "dpo"]
    current = Registry().promoted().id

    grown = run_loop(tiny(tmp_path, demo_path(), 0.5))  # a destructive learning rate (step 1 is warmup at lr 0; step 2 runs at 0.5)
    assert grown["new_contracts"] == [HELD_BACK] and grown["current"] == current
    stages = {stage["name"]: stage for stage in grown["stages"]}
    assert stages["sft-data"]["outputs"]["contracts"] == [HELD_BACK]
    assert 0 < stages["index"]["outputs"]["texts_embedded"] < first["stages"][1]["outputs"]["texts_embedded"]
    assert not grown["decision"]["promote"] and grown["decision"]["reasons"]
    assert Registry().get(grown["decision"]["version"]).status == "refused" and Registry().promoted().id == current


def thumbs_down(tmp_path, data) -> Path:
    """Three thumbs-down, each with CUAD's gold clause as the reviewer's correction."""
    from clauseloop.data import load_cuad
    from clauseloop.feedback import FeedbackStore, contract_hash

    dataset = load_cuad(data)
    answered = [q for q in dataset.questions if q.answers][:3]
    with FeedbackStore(tmp_path / "feedback.db") as store:
        for question in answered:
            store.add({"contract_hash": contract_hash(dataset.contracts[question.contract_id].text), "vote": "down",
                       "category": question.category, "spans": [{"text": "Exhibit A"}],
                       "corrected_spans": [{"text": question.answers[0].text}], "user": "test"})
    return tmp_path / "feedback.db"


def test_the_main_job_holds_back_the_last_train_contracts_for_its_second_loop_run(tmp_path):
    from clauseloop.data import load_cuad
    from clauseloop.loop.run import data_without

    before = load_cuad(data_without(demo_path(), {HELD_BACK}, tmp_path / "before.json"))
    full = load_cuad(demo_path())
    assert set(before.contracts) == set(full.contracts) - {HELD_BACK}
    assert before.contracts[min(before.contracts)].text == full.contracts[min(before.contracts)].text
