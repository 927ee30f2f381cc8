"""DPO of the real SmolLM2 continuing the shipped SFT adapter: loss and rewards, artifact, resume, bad pairs.

Every run is a few real optimizer steps on four short pairs (~300 tokens with the program's system prompt), so the
whole file stays within a few minutes on two busy cores.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clauseloop.cli import app
from clauseloop.finetune.dpo import DPORunConfig, train_dpo
from clauseloop.finetune.rows import render_row
from clauseloop.models import SMOLLM2
from tests.finetune.test_sft import (
    RecordLosses,
    StopAfter,
    governing_law_row,
    write_rows,
)

runner = CliRunner()
STATES = ("Oregon", "Texas", "Ohio", "Utah")
STEPS = 4


def governing_law_pair(state: str, **extra) -> dict:
    """Chosen: the governing-law sentence; rejected: the unrelated fees sentence of the same passages."""
    right = governing_law_row(state)
    wrong = render_row(task="Governing Law", passages=f"[1] This Agreement is governed by the laws of {state}. "
                       "[2] Fees are due monthly.", quotes=["Fees are due monthly."], source="gold",
                       contract_id="c", category="Governing Law")
    return {"prompt": right["prompt"], "chosen": right["completion"], "rejected": wrong["completion"],
            "source": "test", **extra}


def tiny_config(pairs: Path, out: Path, adapter: str, **overrides) -> DPORunConfig:
    # a high rate and no warmup so four steps visibly move the adapter
    settings = dict(pairs=str(pairs), out=str(out), from_adapter=adapter, max_steps=STEPS, batch_size=1,
                    gradient_accumulation=1, max_length=384, learning_rate=5e-4, warmup=0, save_steps=1)
    return DPORunConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def sft_adapter(smollm2_dir) -> str:
    """The shipped SFT adapter (what the loop aligns): DPO's starting point and reference. It is only read."""
    from clauseloop.models.store import SHIPPED_STUDENT_DIR

    return str(SHIPPED_STUDENT_DIR)


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", [governing_law_pair(s) for s in STATES])


@pytest.fixture(scope="module")
def full_run(sft_adapter, pairs_file, tmp_path_factory):
    """One uninterrupted run, shared: (result, per-step losses)."""
    recorder = RecordLosses()
    result = train_dpo(tiny_config(pairs_file, tmp_path_factory.mktemp("dpo"), sft_adapter), callbacks=[recorder])
    return result, recorder.losses


@pytest.mark.real_model
def test_dpo_continues_the_sft_adapter_and_writes_one_adapter_with_a_manifest(full_run, pairs_file, sft_adapter):
    result, losses = full_run
    metrics = result.metrics
    assert metrics["steps"] == STEPS and len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    # the reference is the SFT adapter the policy starts from: the first step's loss is exactly log 2
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)
    assert metrics["rewards/margins"] > 0  # the chosen answer gained on the rejected one
    adapter = Path(result.adapter_dir)
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                          "manifest.json"]  # no "ref" copy, no pickle
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["stage"] == "dpo" and manifest["reference"] == manifest["from_adapter"] == sft_adapter
    assert manifest["base_model"] == SMOLLM2 and manifest["config"]["loss"] == "sigmoid"
    assert manifest["dataset"]["sha256"] == hashlib.sha256(pairs_file.read_bytes()).hexdigest()
    assert manifest["dataset"]["pairs_trained"] == len(STATES)
    assert set(manifest["dataset"]["pairs_skipped"].values()) == {0}


@pytest.mark.real_model
def test_a_stopped_run_resumes_to_the_same_step_as_an_uninterrupted_one(full_run, pairs_file, sft_adapter, tmp_path):
    uninterrupted, losses = full_run
    stopped = train_dpo(tiny_config(pairs_file, tmp_path, sft_adapter), callbacks=[StopAfter(2)])
    assert stopped.metrics["steps"] == 2 and (tmp_path / "checkpoints" / "checkpoint-2").is_dir()
    with pytest.raises(ValueError, match="--resume"):
        train_dpo(tiny_config(pairs_file, tmp_path, sft_adapter))
    recorder = RecordLosses()
    resumed = train_dpo(tiny_config(pairs_file, tmp_path, sft_adapter, resume=True), callbacks=[recorder])
    assert resumed.metrics["steps"] == uninterrupted.metrics["steps"] == STEPS
    assert resumed.metrics["resumed_from_step"] == 2
    assert recorder.losses == pytest.approx(losses[2:], rel=1e-3)  # same reference, optimizer and data order


@pytest.mark.real_model
def test_bad_pairs_are_skipped_and_counted_through_the_cli(sft_adapter, tmp_path):
    good = governing_law_pair("Ohio")
    empty = {**good, "rejected": [{"role": "assistant", "content": "  "}]}
    identical = {**good, "rejected": good["chosen"]}
    no_prompt = {"chosen": good["chosen"], "rejected": good["rejected"]}
    too_long = governing_law_pair("Utah " * 200)
    pairs = write_rows(tmp_path / "pairs.jsonl", [good, empty, identical, no_prompt, too_long])
    outcome = runner.invoke(app, ["finetune", "dpo", "--pairs", str(pairs), "--from", sft_adapter, "--out",
                                  str(tmp_path / "run"), "--max-steps", "1", "--max-length", "384", "--loss", "ipo",
                                  "--json"])
    assert outcome.exit_code == 0, outcome.output
    manifest = json.loads(outcome.stdout)
    assert manifest["dataset"]["pairs_trained"] == 1 and manifest["dataset"]["rows"] == 5
    assert manifest["dataset"]["pairs_skipped"] == {"malformed": 1, "empty_side": 1, "identical": 1, "too_long": 1}
    assert manifest["config"]["loss"] == "ipo" and manifest["metrics"]["steps"] == 1


@pytest.mark.real_model
@pytest.mark.parametrize("method", ["kto", "orpo"])
def test_kto_and_orpo_train_through_the_cli(method, sft_adapter, pairs_file, tmp_path):
    outcome = runner.invoke(app, ["finetune", "dpo", "--pairs", str(pairs_file), "--from", sft_adapter, "--out",
                                  str(tmp_path / "run"), "--method", method, "--batch-size", "2", "--max-steps", "1",
                                  "--max-length", "384", "--json"])
    assert outcome.exit_code == 0, outcome.output
    manifest = json.loads(outcome.stdout)
    assert manifest["stage"] == method and manifest["config"]["method"] == method
    assert manifest["metrics"]["steps"] == 1 and math.isfinite(manifest["metrics"]["train_loss"])
    assert sorted(p.name for p in (tmp_path / "run" / "adapter").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "manifest.json"]


def test_kto_needs_a_batch_of_two(tmp_path):
    code, message = dpo_cli("--pairs", "pairs.jsonl", "--from", "adapter", "--out", str(tmp_path), "--method", "kto")
    assert code == 2 and "batch_size >= 2" in message


def dpo_cli(*args: str) -> tuple[int, str]:
    outcome = runner.invoke(app, ["finetune", "dpo", *args])
    return outcome.exit_code, " ".join(outcome.output.split())  # rich wraps long lines


def test_bad_input_gives_a_one_line_error_with_the_fix(tmp_path):
    from clauseloop.finetune.dpo_data import prepare_preference_rows

    code, message = dpo_cli("--pairs", str(tmp_path / "no.jsonl"), "--from-base", "--out", str(tmp_path / "o"))
    assert code == 2 and "does not exist" in message and "clauseloop finetune pairs" in message
    code, message = dpo_cli("--pairs", str(tmp_path / "no.jsonl"), "--out", str(tmp_path / "o"))
    assert code == 2 and "--from SFT_RUN/adapter" in message and "Traceback" not in message
    code, message = dpo_cli("--pairs", "p", "--from-base", "--out", "o", "--loss", "ppo")
    assert code == 2 and "unknown DPO loss 'ppo'" in message
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "no messages"}) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2 is not a JSON row"):
        prepare_preference_rows(bad, tokenizer=None, max_length=384, out_file=tmp_path / "fit.jsonl")
    only_bad = write_rows(tmp_path / "only-bad.jsonl", [{"prompt": "x", "chosen": "y", "rejected": "z"}])
    with pytest.raises(ValueError, match=r"none of the 1 pairs .*malformed"):
        prepare_preference_rows(only_bad, tokenizer=None, max_length=384, out_file=tmp_path / "fit.jsonl")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_dpo(DPORunConfig(pairs=str(only_bad), out=str(tmp_path / "fresh"), from_base=True, resume=True))
    with pytest.raises(ValueError, match="label_smoothing"):
        DPORunConfig(from_base=True, loss="robust", label_smoothing=0.7)
    assert DPORunConfig(from_base=True, loss="robust").smoothing == 0.1
