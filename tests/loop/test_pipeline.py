"""The loop end to end with the real SmolLM2 on the demo contracts, with tiny budgets: a first run tunes and
promotes, a re-run skips everything, a new contract re-runs only what it touches, and a candidate trained with a
destructive learning rate is refused by the gate."""

from __future__ import annotations

import json
import time

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
                      eval_limit=4, sft_steps=2, batch_size=1, gradient_accumulation=1, learning_rate=learning_rate,
                      retention_limit=6, progress=False)


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
    assert set(statuses(first).values()) == {"ran"} and HELD_BACK not in first["new_contracts"]
    assert first["decision"]["promote"], first["decision"]["reasons"]
    assert resolve_alias(STUDENT)[1] == Registry().get("v1").adapter

    started = time.perf_counter()
    again = run_loop(tiny(tmp_path, fewer, 1e-6))
    assert set(statuses(again).values()) == {"skipped"} and "decision" not in again
    assert time.perf_counter() - started < 0.1 * first["seconds"]

    grown = run_loop(tiny(tmp_path, demo_path(), 0.5))  # a destructive learning rate (step 1 is warmup at lr 0; step 2 runs at 0.5)
    assert grown["new_contracts"] == [HELD_BACK] and grown["current"] == "v1"
    stages = {stage["name"]: stage for stage in grown["stages"]}
    assert stages["sft-data"]["outputs"]["contracts"] == [HELD_BACK]
    assert 0 < stages["index"]["outputs"]["texts_embedded"] < first["stages"][1]["outputs"]["texts_embedded"]
    assert not grown["decision"]["promote"] and grown["decision"]["reasons"]
    assert Registry().get("v2").status == "refused" and Registry().promoted().id == "v1"
