"""DSPy's fine-tuning API on the local student: row conversion, settings checks, LocalLM copies, and one real
``dspy.BootstrapFinetune`` run (fixed teacher answers, the real SmolLM2 student, two real LoRA steps)."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest
from dspy.clients.utils_finetune import TrainDataFormat
from dspy.teleprompt.bootstrap_trace import FailedPrediction
from dspy.utils import DummyLM

from clauseloop.engine import EngineConfig, LocalLM
from clauseloop.finetune.provider import (
    LocalBootstrapFinetune,
    LocalFinetuneProvider,
    LocalTrainingJob,
    check_train_kwargs,
    prompt_completion_rows,
    run_directory,
    valid_train_kwargs,
)
from clauseloop.models import SMOLLM2


class ClauseCategory(dspy.Signature):
    """Name the CUAD category of a contract clause."""

    clause: str = dspy.InputField()
    category: str = dspy.OutputField()


CLAUSES = {
    "This Agreement is governed by the laws of Oregon.": "Governing Law",
    "Either party may terminate on thirty days notice.": "Termination For Convenience",
    "Licensee shall not compete with Licensor in Texas.": "Non-Compete",
    "Licensor may audit the books of Licensee once a year.": "Audit Rights",
}


def chat_row(answer) -> dict:
    return {"messages": [{"role": "system", "content": "Name the category."},
                         {"role": "user", "content": "[[ ## clause ## ]]\nGoverned by Ohio law."},
                         {"role": "assistant", "content": answer}]}


def test_chat_rows_become_prompt_completion_rows_and_unusable_ones_are_counted():
    good = chat_row("[[ ## category ## ]]\nGoverning Law\n\n[[ ## completed ## ]]\n")
    rows, skipped = prompt_completion_rows([good, chat_row(""), chat_row(None), chat_row({"text": "x"}),
                                            {"messages": good["messages"][:2]}, {"prompt": "not chat"}])
    assert rows == [{"prompt": good["messages"][:2], "completion": [good["messages"][2]]}]
    assert skipped == {"empty or non-text assistant answer": 3, "last message is not the assistant's": 1,
                       "not a chat row with a prompt and an answer": 1}


def test_train_kwargs_are_sft_settings_and_the_lm_decides_the_weights():
    assert {"out", "max_steps", "learning_rate", "save_steps"} <= set(valid_train_kwargs())
    assert not {"data", "base_model", "from_adapter"} & set(valid_train_kwargs())
    assert check_train_kwargs({"max_steps": 2}) == {"max_steps": 2}
    with pytest.raises(ValueError, match=r"unknown train_kwargs \['n_epochs'\]; valid keys are .*'max_steps'"):
        check_train_kwargs({"n_epochs": 2})
    with pytest.raises(ValueError, match=r"\['base_model'\] come from the LM .*BASE\+ADAPTER_DIR"):
        check_train_kwargs({"base_model": SMOLLM2})
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        check_train_kwargs({"max_steps": 0})


def test_only_chat_rows_are_accepted_before_and_inside_the_job(tmp_path):
    lm = LocalLM()
    with pytest.raises(ValueError, match="chat rows only .*dspy.ChatAdapter"):
        lm.finetune([chat_row("x")], TrainDataFormat.COMPLETION)  # refused before a training thread starts
    with pytest.raises(ValueError, match="unknown train_kwargs"):
        lm.finetune([chat_row("x")], TrainDataFormat.CHAT, {"epochs_": 1})
    job = LocalTrainingJob(model=SMOLLM2, train_data=[], train_data_format="chat")
    with pytest.raises(ValueError, match="chat rows only"):
        LocalFinetuneProvider.finetune(job, SMOLLM2, [chat_row("x")], "grpo_chat", {"out": str(tmp_path)})
    with pytest.raises(ValueError, match="none of the 1 fine-tuning rows .*teacher's outputs parse"):
        LocalFinetuneProvider.finetune(job, SMOLLM2, [chat_row("")], "chat", {"out": str(tmp_path)})
    assert job.status() == "pending" and not list(tmp_path.iterdir())


def test_the_default_run_directory_is_new_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = run_directory(None, b"rows", SMOLLM2)
    assert first.is_absolute() and first.parent == tmp_path / "runs" / "dspy-finetune"
    first.mkdir(parents=True)
    assert run_directory(None, b"rows", SMOLLM2) != first
    assert run_directory("given", b"rows", SMOLLM2) == tmp_path / "given"


def test_local_lm_is_finetunable_by_default_and_the_provider_knows_local_models(tmp_path):
    provider = LocalLM().provider
    assert isinstance(provider, LocalFinetuneProvider) and provider.finetunable
    assert provider.TrainingJob is LocalTrainingJob
    assert provider.is_provider_model(SMOLLM2) and provider.is_provider_model(f"{SMOLLM2}+{tmp_path}")
    assert provider.is_provider_model(str(tmp_path)) and not provider.is_provider_model("openai/gpt-4o-mini")


def test_copy_over_new_weights_keeps_every_setting(tmp_path):
    config = EngineConfig(default_max_tokens=99)
    lm = LocalLM(max_tokens=17, temperature=0.3, cache=False, engine_config=config, metadata={"run": "a"},
                 train_kwargs={"max_steps": 3})
    adapter = str(tmp_path / "adapter")
    tuned = lm.copy(model=f"{SMOLLM2}+{adapter}")  # what DSPy does with the provider's answer
    assert isinstance(tuned, LocalLM) and tuned is not lm
    assert (tuned.model, tuned.base_model, tuned.adapter) == (f"{SMOLLM2}+{adapter}", SMOLLM2, adapter)
    assert tuned.kwargs == lm.kwargs == {"temperature": 0.3, "max_tokens": 17, "metadata": {"run": "a"}}
    assert tuned.cache is False and tuned.engine_config is config and tuned.provider is lm.provider
    assert tuned.train_kwargs == {"max_steps": 3} and tuned.num_retries == 0
    assert tuned._engine_spec.adapter == adapter and lm._engine_spec.adapter is None  # its own engine bridge

    again = lm.copy(adapter=adapter, temperature=0.9)
    assert again.model == tuned.model and again.kwargs["temperature"] == 0.9 and lm.kwargs["temperature"] == 0.3
    assert tuned.copy(adapter=None).model == SMOLLM2 and tuned.copy(model=SMOLLM2).adapter is None
    assert tuned.copy(adapter=str(tmp_path / "other")).adapter == str(tmp_path / "other")
    with pytest.raises(ValueError, match="two adapters"):
        lm.copy(model=f"{SMOLLM2}+{adapter}", adapter=str(tmp_path / "other"))
    with pytest.raises(ValueError, match="model='BASE\\+ADAPTER_DIR'"):
        lm.copy(base_model="other")

    restored = dspy.BaseLM.load_state(tuned.dump_state(), allow_custom_lm_class=True)
    assert isinstance(restored, LocalLM) and restored.model == tuned.model and restored.kwargs == tuned.kwargs


def test_traces_whose_teacher_output_did_not_parse_are_left_out():
    predictor = dspy.Predict(ClauseCategory)
    inputs = {"clause": "Governed by Ohio law."}
    parsed = dspy.Prediction(category="Governing Law")
    failed = FailedPrediction(completion_text="no fields here", format_reward=-1)
    trace_data = [
        {"example": None, "prediction": parsed, "trace": [(predictor, inputs, parsed)], "score": 1},
        {"example": None, "prediction": failed, "trace": [(predictor, inputs, failed)], "score": -1},
    ]
    optimizer = LocalBootstrapFinetune(metric=lambda *args: True)
    rows, data_format = optimizer._prepare_finetune_data(trace_data, lm=LocalLM())
    assert data_format == TrainDataFormat.CHAT and len(rows) == 1
    assert "Governing Law" in rows[0]["messages"][-1]["content"]


def with_demos(predictor: dspy.Predict) -> dspy.Predict:
    """Two demos show the 135M model DSPy's field format, which it does not follow zero-shot."""
    predictor.demos = [
        dspy.Example(clause="Fees are due within thirty days of invoice.", category="Payment Terms"),
        dspy.Example(clause="This Agreement lasts five years.", category="Expiration Date"),
    ]
    return predictor


@pytest.mark.real_model
def test_bootstrap_finetune_trains_the_local_student_with_the_project_trainer(smollm2_dir, tmp_path):
    trainset = [dspy.Example(clause=c, category=k).with_inputs("clause") for c, k in CLAUSES.items()]
    teacher = with_demos(dspy.Predict(ClauseCategory))  # a separate program with the same predictor names
    teacher.set_lm(DummyLM({clause: {"category": category} for clause, category in CLAUSES.items()}))
    student = with_demos(dspy.Predict(ClauseCategory))
    student.set_lm(LocalLM(max_tokens=16, cache=False))
    optimizer = dspy.BootstrapFinetune(
        metric=lambda example, prediction, trace=None: example.category == prediction.category, num_threads=1,
        train_kwargs={"out": str(tmp_path / "run"), "max_steps": 2, "batch_size": 1, "gradient_accumulation": 1,
                      "learning_rate": 1e-3, "warmup": 0, "max_length": 512, "save_steps": 1000},
    )
    compiled = optimizer.compile(student, trainset=trainset, teacher=teacher)

    tuned = compiled.predictors()[0].lm
    adapter = tmp_path / "run" / "adapter"
    assert isinstance(tuned, LocalLM) and tuned.adapter == str(adapter) and tuned.model == f"{SMOLLM2}+{adapter}"
    assert tuned.kwargs["max_tokens"] == 16 and tuned.cache is False
    assert (adapter / "adapter_model.safetensors").is_file()
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert manifest["base_model"] == SMOLLM2 and manifest["metrics"]["steps"] == 2
    assert manifest["dataset"]["rows"] == len(CLAUSES)
    rows = [json.loads(line) for line in Path(tmp_path / "run" / "data.jsonl").read_text().splitlines()]
    assert {row["completion"][0]["content"].split("\n")[1] for row in rows} == set(CLAUSES.values())

    prediction = compiled(clause="This Agreement is governed by the laws of Ohio.")
    assert isinstance(prediction.category, str)
    assert tuned.history and tuned.history[-1]["model"] == tuned.model
    tuned.local_engine.close()


def test_job_status_follows_the_training_and_cancel_asks_the_trainer_to_stop():
    job = LocalTrainingJob(model=SMOLLM2, train_data=[], train_data_format=TrainDataFormat.CHAT)
    assert job.status() == "pending" and job.cancel() and job.stop_requested.is_set()
    assert job.status() == "cancelled"
    job.set_result(RuntimeError("fine-tuning was cancelled after step 1"))
    assert job.status() == "failed" and not job.cancel()
    done = LocalTrainingJob(model=SMOLLM2, train_data=[], train_data_format=TrainDataFormat.CHAT)
    done.set_result(LocalLM())
    assert done.status() == "succeeded"
