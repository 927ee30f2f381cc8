"""Faults: the loop process killed (``os._exit``, no clean-up) inside a stage, again and again, with the real model.

Each run is a fresh process that dies in the next stage; every stage body logs its calls. Re-running must redo
only the stage that was killed: nothing finished is redone and nothing is lost, down to the registry entry a
gate made just before it died.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from clauseloop.data.loaders import demo_path

pytestmark = pytest.mark.real_model

DYING_LOOP = """
import json, os, sys
from pathlib import Path

kill, log, config = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
import clauseloop.finetune.sft as sft
import clauseloop.loop.stages as stages
import clauseloop.program.evaluation as evaluation
from clauseloop.models.registry import Registry


def watch(owner, attribute, name, die_on_call=1):
    real, calls = getattr(owner, attribute), []

    def wrapper(*args, **kwargs):
        calls.append(name)
        with log.open("a") as handle:
            handle.write(name + "\\n")
        if kill == name and len(calls) == die_on_call:
            os._exit(9)  # a kill: no finally blocks, no atexit
        return real(*args, **kwargs)

    setattr(owner, attribute, wrapper)


watch(stages, "build_index", "index")
watch(stages, "build_gold_rows_for", "sft-data")
watch(sft, "train_sft", "sft")
watch(evaluation, "evaluate", "evaluate", die_on_call=2)  # after the current model's evaluation finished
watch(stages, "measure_forgetting", "retention")
watch(Registry, "add", "register")
for decision in ("promote", "refuse"):
    watch(Registry, decision, "decide")  # after the candidate was registered

from clauseloop.loop.pipeline import LoopConfig, run_loop

report = run_loop(LoopConfig(**config))
print(json.dumps(report["decision"]["version"]))
"""


def test_a_loop_killed_in_each_stage_redoes_only_that_stage(tmp_path, smollm2_dir):
    script, log = tmp_path / "dying_loop.py", tmp_path / "calls.log"
    script.write_text(DYING_LOOP)
    config = {"out": str(tmp_path / "loop"), "data": str(demo_path()), "registry": str(tmp_path / "registry"),
              "eval_limit": 4, "sft_steps": 2, "batch_size": 1, "gradient_accumulation": 1,
              "learning_rate": 1e-6, "retention_limit": 6, "progress": False}
    environment = {"CLAUSELOOP_REGISTRY": str(tmp_path / "registry")}

    def run(kill: str) -> subprocess.CompletedProcess:
        import os

        return subprocess.run([sys.executable, str(script), kill, str(log), json.dumps(config)],
                              capture_output=True, text=True, env={**os.environ, **environment}, timeout=900)

    for stage in ("index", "sft", "evaluate", "decide"):
        killed = run(stage)
        assert killed.returncode == 9, killed.stderr[-3000:]
        assert log.read_text().splitlines()[-1] == stage
    finished = run("nothing")
    assert finished.returncode == 0, finished.stderr[-3000:]

    calls = Counter(log.read_text().splitlines())
    # each killed stage ran twice (killed, then finished); the rest once: nothing finished was redone
    assert calls == Counter({"index": 2, "sft-data": 1, "sft": 2, "evaluate": 3, "retention": 1, "register": 1,
                             "decide": 2})
    registry = json.loads((tmp_path / "registry" / "registry.json").read_text())
    assert [version["id"] for version in registry["versions"]] == [json.loads(finished.stdout)]
