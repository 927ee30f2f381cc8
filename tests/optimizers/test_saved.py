"""Saved programs: JSON state + manifest written atomically, read back, damaged files refused, loaded by the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from clauseloop.cli import app
from clauseloop.optimizers import Optimizer, build_manifest, save_compiled
from clauseloop.optimizers.run import dev_scores
from clauseloop.program.evaluation import build_program
from clauseloop.program.saved import (
    MANIFEST_FILE,
    PROGRAM_FILE,
    REQUIRED_MANIFEST_KEYS,
    SavedProgramError,
    load_compiled,
    read_manifest,
)
from tests.optimizers.conftest import scripted_dummy_lm

REBUILD = r"re-run `clauseloop optimize --optimizer bootstrap \.\.\. --out "


@pytest.fixture(scope="module")
def saved(tmp_path_factory, demo_dataset, small_config, small_data):
    """A compiled program (one bootstrapped + one labeled demo) saved with a manifest of real dev scores."""
    from tests.optimizers.conftest import make_program

    program = make_program(demo_dataset)
    optimizer = Optimizer(small_config, student_lm=scripted_dummy_lm(), teacher_lm=scripted_dummy_lm("dummy/t"))
    compiled = optimizer.compile(program, trainset=small_data.trainset, valset=small_data.valset)
    scores = dev_scores(small_data.valset, optimizer.score(compiled, small_data.valset))
    manifest = build_manifest(small_config, data={"fingerprint": small_data.fingerprint},
                              lm_usage=optimizer.usage(), dev_scores=scores)
    directory = tmp_path_factory.mktemp("saved")
    files = save_compiled(directory, compiled, manifest)
    return directory, compiled, files


def copy_of(saved_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(saved_dir, target)
    return target


def test_save_writes_json_state_without_lm_and_a_full_manifest(saved, small_data):
    directory, compiled, files = saved
    assert sorted(p.name for p in directory.iterdir()) == [MANIFEST_FILE, PROGRAM_FILE]  # no temp files left
    state = json.loads((directory / PROGRAM_FILE).read_text())
    assert state["extract"]["lm"] is None and len(state["extract"]["demos"]) == len(compiled.extract.demos) >= 1
    assert all(set(d) <= {"category", "passages", "clauses", "augmented"} for d in state["extract"]["demos"])
    manifest = read_manifest(directory)
    assert set(REQUIRED_MANIFEST_KEYS) <= set(manifest) and files["manifest"].endswith(MANIFEST_FILE)
    assert manifest["data"]["fingerprint"] == small_data.fingerprint
    assert manifest["versions"]["dspy"] and manifest["versions"]["clauseloop"]
    assert manifest["teacher"]["spec"] == "teacher" and manifest["seconds"]["compile"] >= 0
    scores = manifest["dev_scores"]
    assert scores["questions"] == len(small_data.valset) and 0 <= scores["f1"] <= 1
    assert {"aupr", "no_answer_accuracy", "dropped_span_rate"} <= set(scores)


def test_load_round_trip_and_build_program_accepts_the_directory(saved, demo_dataset):
    directory, compiled, _ = saved
    for loaded in (load_compiled(directory, demo_dataset), build_program(str(directory), demo_dataset)):
        assert [dict(d) for d in loaded.extract.demos] == [dict(d) for d in compiled.extract.demos]
        assert loaded.extract.signature.instructions == compiled.extract.signature.instructions
        assert loaded.extract.lm is None and loaded.shared.contracts.keys() == demo_dataset.contracts.keys()
    assert load_compiled(directory, demo_dataset, gate=False).config.gate is False
    plain_json = build_program(str(directory / PROGRAM_FILE), demo_dataset)  # a bare program.save JSON still works
    assert len(plain_json.extract.demos) == len(compiled.extract.demos)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "lm_state", "other_program"])
def test_a_damaged_program_file_is_refused_with_the_fix(saved, demo_dataset, tmp_path, damage):
    directory = copy_of(saved[0], tmp_path)
    path = directory / PROGRAM_FILE
    text = path.read_text()
    if damage == "garbage":
        path.write_bytes(b"\x80\x81\xfe\x00 not json")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "missing":
        path.unlink()
    elif damage == "lm_state":
        state = json.loads(text)
        state["extract"]["lm"] = {"model": "openai/gpt-4o-mini"}
        path.write_text(json.dumps(state))
    else:
        path.write_text(json.dumps({"answer": json.loads(text)["extract"]}))
    with pytest.raises(SavedProgramError, match=REBUILD + str(directory)):
        load_compiled(directory, demo_dataset)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "incomplete"])
def test_a_damaged_manifest_is_refused_with_the_fix(saved, demo_dataset, tmp_path, damage):
    directory = copy_of(saved[0], tmp_path)
    path = directory / MANIFEST_FILE
    text = path.read_text()
    if damage == "garbage":
        path.write_bytes(bytes(range(256)))
    elif damage == "truncated":
        path.write_text(text[:-40])
    elif damage == "missing":
        path.unlink()
    else:
        manifest = json.loads(text)
        del manifest["dev_scores"]
        path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"clauseloop optimize .*--out " + str(directory)):
        load_compiled(directory, demo_dataset)


def test_cli_refuses_a_damaged_directory_cleanly(saved, tmp_path):
    directory = copy_of(saved[0], tmp_path)
    (directory / PROGRAM_FILE).write_text('{"extract": {"demos": [')
    for command in (["evaluate", "--program", str(directory), "--limit", "2", "--out", str(tmp_path / "eval")],
                    ["ask", "HALVORSEN", "Governing Law", "--program", str(directory)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "clauseloop optimize" in result.output and "Traceback" not in result.output


def test_optimize_cli_reports_user_errors_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["optimize", "--out", str(tmp_path), "--limit", "1"])
    assert result.exit_code == 2 and "at least 2 training examples; got 1" in result.output
    result = CliRunner().invoke(app, ["optimize", "--out", str(tmp_path), "--optimizer", "gepa"])
    assert result.exit_code == 2 and "unknown optimizer 'gepa'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / MANIFEST_FILE).exists()


@pytest.mark.real_model
def test_a_fresh_process_evaluates_with_the_saved_program_and_ask_uses_it(saved, tmp_path, smollm2_dir):
    directory = saved[0]
    cli = [sys.executable, "-m", "clauseloop"]
    evaluation = subprocess.run(
        [*cli, "evaluate", "--program", str(directory), "--limit", "5", "--threads", "4", "--json",
         "--out", str(tmp_path / "eval")], capture_output=True, text=True, timeout=300,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    report = json.loads(evaluation.stdout)
    assert report["config"]["program"] == str(directory) and report["data"]["questions"] == 5
    # `ask` reads the same directory through the same build_program: in-process saves a second start-up.
    asked = CliRunner().invoke(app, ["ask", "HALVORSEN", "Governing Law", "--program", str(directory), "--json"])
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout)["category"] == "Governing Law"


def test_teacher_traces_run_the_saved_program_and_rows_stay_zero_shot(saved, tmp_path, monkeypatch):
    """`finetune data --program DIR`: the teacher sees the compiled demos, the student's rows do not."""
    import clauseloop.engine.roles as roles
    from clauseloop.finetune.build import DataConfig, build_dataset
    from clauseloop.finetune.traces import TraceConfig

    directory, compiled, _ = saved
    teacher = scripted_dummy_lm("dummy/teacher")
    monkeypatch.setattr(roles, "make_lm", lambda spec, **settings: teacher)
    build_dataset(DataConfig(out=str(tmp_path / "t.jsonl"), sources=("teacher",), program=str(directory),
                             limit_contracts=1, traces=TraceConfig(questions_per_contract=None, threads=4)))
    demo_text = next(iter(compiled.extract.demos))["passages"][:60]
    sent = [m["content"] for entry in teacher.history for m in entry["messages"]]
    assert teacher.history and any(demo_text in content for content in sent)
    rows = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert rows and all(demo_text not in m["content"] for row in rows for m in row["prompt"])
