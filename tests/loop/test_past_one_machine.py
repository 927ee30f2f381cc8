"""Past one machine: the documented configuration loads as written, and the trainers pick their device."""

from __future__ import annotations

from pathlib import Path

import pytest

from clauseloop.engine.roles import load_roles
from clauseloop.finetune.sft import device_flags
from clauseloop.loop.pipeline import LoopConfig, load_loop_config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "many-machines.toml"


def test_the_documented_file_gives_remote_roles_and_the_loop_settings():
    roles = load_roles(EXAMPLE, environ={})
    assert roles.teacher.model == "hosted_vllm/Qwen/Qwen2.5-7B-Instruct"
    assert roles.teacher.api_base == "http://gpu-box:8000/v1"
    assert roles.judge.model == "openai/gpt-4o-mini" and roles.student.model == "clauseloop-student"

    config = load_loop_config(EXAMPLE, out="elsewhere")
    assert (config.sft_steps, config.eval_limit, config.batch_size) == (200, 410, 8)
    assert config.gate.bootstrap_draws == 2000 and config.drift.category_mix == 0.3
    assert config.drift.min_feedback == LoopConfig().drift.min_feedback  # untouched settings keep their default
    assert config.out == "elsewhere"  # a flag wins over the file


def test_a_misspelled_loop_setting_is_refused_with_the_valid_names(tmp_path):
    bad = tmp_path / "loop.toml"
    bad.write_text("[loop]\nsft_step = 3\n")
    with pytest.raises(ValueError, match=r"unknown \[loop\] setting\(s\) \['sft_step'\].*sft_steps"):
        load_loop_config(bad)
    bad.write_text("[loop.gate]\ndraws = 3\n")
    with pytest.raises(ValueError, match=r"\[loop.gate\].*bootstrap_draws"):
        load_loop_config(bad)


def test_trainers_use_the_gpu_when_asked_and_fp32_on_the_cpu():
    import torch

    assert device_flags("cpu") == {"use_cpu": True, "bf16": False, "fp16": False}
    assert device_flags("cuda")["use_cpu"] is False
    assert device_flags("auto")["use_cpu"] is not torch.cuda.is_available()
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        device_flags("tpu")


def test_the_sft_arguments_follow_the_device(tmp_path):
    from clauseloop.finetune.sft import SFTRunConfig, _trainer_arguments

    on_gpu = _trainer_arguments(SFTRunConfig(data="rows.jsonl", out=str(tmp_path), device="cuda"), tmp_path)
    on_cpu = _trainer_arguments(SFTRunConfig(data="rows.jsonl", out=str(tmp_path), device="cpu"), tmp_path)
    assert on_gpu.use_cpu is False and on_cpu.use_cpu is True and on_cpu.bf16 is False
