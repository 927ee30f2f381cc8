"""Roles: model strings to LMs, and configuration precedence (defaults < file < environment < flags)."""

from __future__ import annotations

import json

import dspy
import pytest

from clauseloop.engine import LocalLM, RoleConfig, RolesConfig, is_local_model, load_roles, make_lm
from clauseloop.models import SMOLLM2, STUDENT


def test_defaults_run_every_role_on_the_local_model():
    roles = load_roles(environ={})
    assert roles == RolesConfig()
    assert roles.teacher.model == roles.judge.model == SMOLLM2
    assert roles.student.model == STUDENT  # the shipped distilled adapter on SmolLM2
    assert is_local_model(STUDENT) and is_local_model("base")


def test_model_strings_choose_local_or_litellm(tmp_path):
    assert is_local_model(SMOLLM2) and is_local_model(str(tmp_path)) and is_local_model(f"{SMOLLM2}+{tmp_path}")
    assert is_local_model("local:HuggingFaceTB/SmolLM2-135M-Instruct") and is_local_model("./not-yet-trained")
    for litellm_model in ("openai/gpt-4o-mini", "hosted_vllm/Qwen/Qwen2.5-7B", "ollama_chat/llama3", "bedrock/x"):
        assert not is_local_model(litellm_model)


def test_make_lm_builds_a_local_lm_without_loading_it(tmp_path):
    lm = make_lm(f"{SMOLLM2}+{tmp_path}", max_tokens=12)
    assert isinstance(lm, LocalLM) and lm.adapter == str(tmp_path) and lm.kwargs["max_tokens"] == 12


def test_make_lm_builds_a_dspy_lm_for_litellm_strings(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    lm = make_lm("hosted_vllm/qwen", api_base="http://127.0.0.1:9/v1", api_key_env="JUDGE_KEY", temperature=0.2)
    assert type(lm) is dspy.LM and lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"
    assert lm.kwargs["api_key"] == "sk-test" and lm.kwargs["temperature"] == 0.2


@pytest.mark.parametrize(
    ("model", "settings", "message"),
    [
        ("gpt4", {}, "LiteLLM string"),
        ("openai/gpt-4o-mini", {"api_key_env": "CLAUSELOOP_TEST_UNSET_KEY"}, "not set"),
        (SMOLLM2, {"api_base": "http://127.0.0.1:9/v1"}, "runs locally"),
    ],
)
def test_make_lm_explains_mistakes(model, settings, message):
    with pytest.raises(ValueError, match=message):
        make_lm(model, **settings)


def test_file_then_environment_then_flags(tmp_path):
    config = tmp_path / "roles.toml"
    config.write_text(
        '[roles]\nteacher = "openai/gpt-4o-mini"\n'
        '[roles.judge]\nmodel = "hosted_vllm/judge"\napi_base = "http://127.0.0.1:8001/v1"\nmax_tokens = 64\n'
    )
    environ = {"CLAUSELOOP_ROLES": str(config), "CLAUSELOOP_STUDENT": "runs/student", "CLAUSELOOP_JUDGE": "x/judge2"}
    roles = load_roles(environ=environ, overrides={"teacher": "bedrock/claude", "student": None})
    assert roles.teacher.model == "bedrock/claude"  # flag beats file
    assert roles.student.model == "runs/student"  # environment beats default; an unset flag changes nothing
    assert roles.judge == RoleConfig(model="x/judge2", max_tokens=64, api_base="http://127.0.0.1:8001/v1")


def test_json_files_work_and_mistakes_are_named(tmp_path):
    config = tmp_path / "roles.json"
    config.write_text(json.dumps({"student": {"model": "runs/s", "temperature": 0.7}}))
    assert load_roles(config, environ={}).student == RoleConfig(model="runs/s", temperature=0.7)
    config.write_text(json.dumps({"critic": "openai/gpt-4o"}))
    with pytest.raises(ValueError, match="unknown role"):
        load_roles(config, environ={})
    config.write_text(json.dumps({"judge": {"modle": "openai/gpt-4o"}}))
    with pytest.raises(ValueError, match="unknown key"):
        load_roles(config, environ={})
    with pytest.raises(FileNotFoundError):
        load_roles(tmp_path / "missing.toml", environ={})


def test_roles_config_hands_out_lms():
    roles = RolesConfig(judge=RoleConfig(model="openai/gpt-4o-mini", max_tokens=99))
    assert isinstance(roles.lm("student"), LocalLM)
    assert roles.lm("judge", cache=False).kwargs["max_tokens"] == 99
    with pytest.raises(ValueError, match="roles are"):
        roles.lm("critic")


def test_make_lm_resolves_a_role_name_through_the_roles_config(monkeypatch):
    monkeypatch.setenv("CLAUSELOOP_JUDGE", "openai/gpt-4o-mini")
    for variable in ("CLAUSELOOP_ROLES", "CLAUSELOOP_STUDENT", "CLAUSELOOP_JUDGE_API_BASE"):
        monkeypatch.delenv(variable, raising=False)
    judge = make_lm("judge", max_tokens=33)
    assert type(judge) is dspy.LM and judge.model == "openai/gpt-4o-mini" and judge.kwargs["max_tokens"] == 33
    assert isinstance(make_lm("student"), LocalLM)
