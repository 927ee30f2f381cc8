"""LoRA SFT of the real SmolLM2 on a tiny dataset: loss, artifact, resume, continuing an adapter, bad input.

Every run is a few real optimizer steps on rows with one short passage (~300 tokens with the program's system
prompt), so the whole file stays within a few minutes on two busy cores.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
from transformers import TrainerCallback
from typer.testing import CliRunner

from clauseloop.cli import app
from clauseloop.finetune.rows import render_row
from clauseloop.finetune.sft import SFTRunConfig, train_sft
from clauseloop.models import SMOLLM2

runner = CliRunner()
STATES = ("Oregon", "Texas", "Ohio", "Utah")
STEPS = 4


def governing_law_row(state: str) -> dict:
    passages = f"[1] This Agreement is governed by the laws of {state}. [2] Fees are due monthly."
    return render_row(
        task="Governing Law", passages=passages,
        quotes=[f"This Agreement is governed by the laws of {state}."], source="gold", contract_id="c",
        category="Governing Law",
    )


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def tiny_config(data: Path, out: Path, **overrides) -> SFTRunConfig:
    # a high rate and no warmup so four steps visibly move the adapter
    settings = dict(data=str(data), out=str(out), max_steps=STEPS, batch_size=1, gradient_accumulation=1,
                    max_length=384, learning_rate=1e-3, warmup=0, save_steps=1)
    return SFTRunConfig(**{**settings, **overrides})


class RecordLosses(TrainerCallback):
    """The loss of every logged step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))


class StopAfter(RecordLosses):
    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True  # as if the run were interrupted here


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_rows(tmp_path_factory.mktemp("sft-data") / "rows.jsonl", [governing_law_row(s) for s in STATES])


@pytest.fixture(scope="module")
def full_run(smollm2_dir, data_file, tmp_path_factory):
    """One uninterrupted run, shared: (result, per-step losses)."""
    recorder = RecordLosses()
    result = train_sft(tiny_config(data_file, tmp_path_factory.mktemp("full")), callbacks=[recorder])
    return result, recorder.losses


def completion_loss(model, tokenizer, row: dict) -> float:
    import torch

    prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, return_dict=True)["input_ids"]
    full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], return_dict=True)["input_ids"]
    labels = [-100] * len(prompt) + full[len(prompt):]
    with torch.no_grad():
        return model(input_ids=torch.tensor([full]), labels=torch.tensor([labels])).loss.item()


@pytest.mark.real_model
def test_training_gives_a_finite_loss_and_a_complete_pickle_free_adapter(full_run, data_file):
    result, losses = full_run
    metrics = result.metrics
    assert metrics["steps"] == STEPS and len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    assert math.isfinite(metrics["train_loss"]) and metrics["tokens"] > 0 and metrics["tokens_per_second"] > 0
    adapter = Path(result.adapter_dir)
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                          "manifest.json"]
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["base_model"] == SMOLLM2 and len(manifest["base_sha256"]) == 64
    assert manifest["dataset"]["sha256"] == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert manifest["dataset"]["rows"] == len(STATES) and manifest["dataset"]["rows_too_long"] == 0
    assert manifest["config"]["lora_r"] == 16 and manifest["config"]["max_steps"] == STEPS
    assert set(manifest["versions"]) == {"torch", "transformers", "trl", "peft", "clauseloop"}
    assert {"train_loss", "steps", "tokens", "tokens_per_second", "seconds"} <= set(manifest["metrics"])
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == SMOLLM2


@pytest.mark.real_model
def test_adapter_lowers_the_completion_loss_and_answers_through_local_lm(full_run, smollm2_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clauseloop.engine.lm import LocalLM

    result, _ = full_run
    row = governing_law_row("Oregon")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    base_loss = completion_loss(AutoModelForCausalLM.from_pretrained(smollm2_dir), tokenizer, row)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2_dir), result.adapter_dir)
    assert completion_loss(tuned.eval(), tokenizer, row) < base_loss
    with LocalLM(SMOLLM2, adapter=result.adapter_dir, max_tokens=12, cache=False) as lm:
        answer = lm(messages=row["prompt"])
    assert isinstance(answer[0], str) and answer[0].strip()


@pytest.mark.real_model
def test_a_stopped_run_resumes_to_the_same_step_as_an_uninterrupted_one(full_run, data_file, tmp_path):
    uninterrupted, losses = full_run
    stopped = train_sft(tiny_config(data_file, tmp_path), callbacks=[StopAfter(2)])
    assert stopped.metrics["steps"] == 2 and (tmp_path / "checkpoints" / "checkpoint-2").is_dir()
    with pytest.raises(ValueError, match="--resume"):
        train_sft(tiny_config(data_file, tmp_path))  # a fresh run must not mix with the old checkpoints
    recorder = RecordLosses()
    resumed = train_sft(tiny_config(data_file, tmp_path, resume=True), callbacks=[recorder])
    assert resumed.metrics["steps"] == uninterrupted.metrics["steps"] == STEPS
    assert resumed.metrics["resumed_from_step"] == 2
    assert resumed.metrics["tokens"] == uninterrupted.metrics["tokens"]  # the same rows, none seen twice
    assert recorder.losses == pytest.approx(losses[2:], rel=1e-3)  # optimizer, schedule and data order restored


@pytest.mark.real_model
def test_from_adapter_continues_training_it_through_the_cli(full_run, data_file, tmp_path):
    trained, losses = full_run
    out = tmp_path / "continued"
    outcome = runner.invoke(app, ["finetune", "sft", "--data", str(data_file), "--out", str(out), "--from",
                                  trained.adapter_dir, "--max-steps", "2", "--lr", "1e-3", "--json"])
    assert outcome.exit_code == 0, outcome.output
    manifest = json.loads(outcome.stdout)  # training chatter goes to stderr: stdout is the manifest alone
    assert manifest["from_adapter"] == trained.adapter_dir and manifest["metrics"]["steps"] == 2
    # the run it continued is in its history, and `seen` totals both runs
    assert [run["sha256"] for run in manifest["lineage"]] == [trained.manifest["dataset"]["sha256"]]
    rows_per_step = manifest["config"]["batch_size"] * manifest["config"]["gradient_accumulation"]
    assert manifest["seen"] == {"runs": 2, "rows_seen": STEPS * 1 + 2 * rows_per_step,  # tiny_config: 1 row a step
                                "tokens": trained.metrics["tokens"] + manifest["metrics"]["tokens"]}
    # it starts from the trained adapter, not from the base: already below the base's first loss
    assert manifest["metrics"]["train_loss"] < losses[0]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def sft_cli(*args: str) -> tuple[int, str]:
    outcome = runner.invoke(app, ["finetune", "sft", *args])
    return outcome.exit_code, " ".join(outcome.output.split())  # rich wraps long lines


def test_bad_input_gives_a_one_line_error_with_the_fix(tmp_path):
    code, message = sft_cli("--data", str(tmp_path / "no.jsonl"), "--out", str(tmp_path))
    assert code == 2 and "does not exist" in message and "clauseloop finetune data" in message
    assert "Traceback" not in message
    empty = write_rows(tmp_path / "empty.jsonl", [])
    code, message = sft_cli("--data", str(empty), "--out", str(tmp_path))
    assert code == 2 and "has no rows; build it with `clauseloop finetune data --out FILE`" in message
    no_completion = write_rows(tmp_path / "bad.jsonl", [{"prompt": [{"role": "user", "content": "hi"}]}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1 has no 'prompt' and 'completion'"):
        train_sft(SFTRunConfig(data=str(no_completion), out=str(tmp_path / "out")))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_sft(SFTRunConfig(data=str(write_rows(tmp_path / "ok.jsonl", [governing_law_row("Ohio")])),
                               out=str(tmp_path / "fresh"), resume=True))
    with pytest.raises(ValueError, match="lm_head"):
        SFTRunConfig(target_modules=("q_proj", "lm_head"))
    code, message = sft_cli("--data", str(no_completion), "--out", str(tmp_path), "--lr", "0")
    assert code == 2 and "learning_rate must be > 0" in message


@pytest.mark.real_model
def test_rows_longer_than_max_length_are_left_out_not_truncated(smollm2_dir, tmp_path):
    from transformers import AutoTokenizer

    from clauseloop.finetune.sft_data import prepare_training_rows

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    long_row = render_row(task="Governing Law", passages="[1] " + "word " * 400, quotes=[], source="gold",
                          contract_id="c", category="Governing Law")
    data = write_rows(tmp_path / "rows.jsonl", [governing_law_row("Utah"), long_row])
    prepared = prepare_training_rows(data, tokenizer, 384, tmp_path / "fit.jsonl")
    assert prepared.summary["rows_trained"] == 1 and prepared.summary["rows_too_long"] == 1
    assert prepared.summary["token_lengths"]["max"] > 384 and prepared.fingerprint["rows"] == 2
    kept = [json.loads(line) for line in prepared.file.read_text().splitlines()]
    assert kept == [{"prompt": governing_law_row("Utah")["prompt"], "completion": governing_law_row("Utah")["completion"]}]
    with pytest.raises(ValueError, match="raise --max-length"):
        prepare_training_rows(data, tokenizer, 16, tmp_path / "none.jsonl")


def test_the_dataset_is_streamed_line_by_line_with_file_and_line_in_errors(tmp_path):
    import hashlib as hashes

    from clauseloop.finetune.sft_data import iter_training_pairs

    good = json.dumps(governing_law_row("Ohio")) + "\n"
    path = tmp_path / "rows.jsonl"
    path.write_text(good + good + '{"prompt": [{"role": "user", "content": "hi"}]')  # a half-written last line
    digest = hashes.sha256()
    assert len(list(iter_training_pairs(path, digest))) == 2
    assert digest.hexdigest() == hashes.sha256((good + good).encode()).hexdigest()
    path.write_text(good + "not json\n")
    pairs = iter_training_pairs(path)
    next(pairs)  # a generator: rows are read one at a time, the bad line only when reached
    with pytest.raises(ValueError, match=r"rows.jsonl:2 is not a JSON row"):
        next(pairs)


def test_resuming_on_a_changed_dataset_is_flagged(tmp_path, caplog):
    from clauseloop.finetune.sft import _record_run_start

    _record_run_start(tmp_path, {"path": "rows.jsonl", "sha256": "a" * 64, "rows": 4}, resuming=False)
    with caplog.at_level("WARNING"):
        _record_run_start(tmp_path, {"path": "rows.jsonl", "sha256": "a" * 64, "rows": 4}, resuming=True)
        assert not caplog.records
        _record_run_start(tmp_path, {"path": "rows.jsonl", "sha256": "b" * 64, "rows": 9}, resuming=True)
    assert "changed since this run started (4 rows then, 9 now)" in caplog.text


def test_replay_mixes_the_base_models_own_answers_into_training(tmp_path):
    from clauseloop.finetune.replay import base_answers, replay_count, replay_rows

    rows = replay_rows(3, SMOLLM2, seed=1)
    assert len(rows) == 3 and len({row["prompt"][0]["content"] for row in rows}) == 3
    prompt = rows[0]["prompt"][0]["content"]
    assert rows[0]["completion"][0]["content"] == base_answers(SMOLLM2, [prompt])[prompt] != ""
    assert replay_count(10, 0.2) == 2 and replay_count(10, 0) == 0
    data = write_rows(tmp_path / "rows.jsonl", [governing_law_row(state) for state in STATES + STATES[:1]])
    manifest = train_sft(tiny_config(data, tmp_path / "run", max_steps=1, replay=0.4)).manifest
    assert manifest["dataset"]["replay_rows"] == 2 and manifest["dataset"]["rows_trained"] == 5
    with pytest.raises(ValueError, match="replay"):
        SFTRunConfig(data="x", out="y", replay=-0.1)
