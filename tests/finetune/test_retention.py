"""The forgetting suite: the prompts file, the answer checks, and base/tuned measurements on the real SmolLM2.

The real-model tests use 6 prompts (3 checkable, one of each kind, and 3 open) and 16 tokens per answer, with the
base answers cached in a temporary directory shared by the module, so together they stay well under a minute.
"""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from clauseloop.cli import app
from clauseloop.finetune import retention
from clauseloop.finetune.retention import (
    CHECK_TYPES,
    CHECKED_KINDS,
    KINDS,
    PROMPTS_FILE,
    RetentionConfig,
    load_prompts,
    measure_retention,
    normalize,
    numbers_in,
    passes,
    select_prompts,
)
from clauseloop.models import SMOLLM2

PROMPTS = load_prompts()
BY_ID = {prompt.id: prompt for prompt in PROMPTS}
REPLAY_FILE = PROMPTS_FILE.with_name("replay_prompts.json")
OFF_TOPIC = re.compile(r"\b(contracts?|clauses?|laws?|lawyers?|legal|agreements?|liabilit\w*|indemn\w*|courts?|"
                       r"attorneys?|licen[cs]e\w*|terminat\w*)\b", re.IGNORECASE)
runner = CliRunner()


def words(text: str) -> set[str]:
    return set(normalize(text).split())


def test_prompts_file_is_well_formed():
    assert 180 <= len(PROMPTS) <= 230
    assert len(BY_ID) == len(PROMPTS)
    assert len({normalize(p.prompt) for p in PROMPTS}) == len(PROMPTS), "two prompts differ only in punctuation/case"
    checkable = [p for p in PROMPTS if p.check is not None]
    assert len(checkable) >= 90 and len(PROMPTS) - len(checkable) >= 90
    assert {p.kind for p in PROMPTS} == set(KINDS)
    assert all(sum(p.kind == kind for p in PROMPTS) >= 20 for kind in CHECKED_KINDS)
    for prompt in checkable:
        check = prompt.check
        assert check["type"] in CHECK_TYPES and set(check) <= {"type", "value", "case_sensitive"}, prompt.id
        if check["type"] == "number":
            assert isinstance(check["value"], (int, float)), prompt.id
        elif check["type"] == "regex":
            re.compile(check["value"])
        else:
            options = check["value"] if isinstance(check["value"], list) else [check["value"]]
            assert options and all(isinstance(o, str) and normalize(o) for o in options), prompt.id
    assert not [p.id for p in PROMPTS if OFF_TOPIC.search(p.prompt)], "retention prompts stay off contracts and law"


def test_disjoint_from_the_replay_prompts():
    if not REPLAY_FILE.is_file():
        pytest.skip(f"{REPLAY_FILE.name} is not there")
    entries = json.loads(REPLAY_FILE.read_text())["prompts"]
    replay = [entry if isinstance(entry, str) else entry["prompt"] for entry in entries]
    assert not {normalize(text) for text in replay} & {normalize(p.prompt) for p in PROMPTS}
    near = [(p.id, text) for p in PROMPTS for text in replay
            if len(words(p.prompt) & words(text)) / len(words(p.prompt) | words(text)) >= 0.75]
    assert not near, f"near duplicates of replay prompts: {near}"


def test_load_prompts_refuses_malformed_entries(tmp_path):
    good = {"id": "a", "kind": "fact", "prompt": "Capital of France?", "check": {"type": "contains", "value": "paris"}}
    broken = {
        "open prompt with a check": {**good, "kind": "open"},
        "check type": {**good, "check": {"type": "similar", "value": "paris"}},
        "regex": {**good, "check": {"type": "regex", "value": "(unclosed"}},
        "unique": good,
    }
    for problem, entry in broken.items():
        path = tmp_path / "prompts.json"
        path.write_text(json.dumps({"prompts": [good, {**entry, "id": "a" if problem == "unique" else "b"}]}))
        with pytest.raises(ValueError, match="prompt"):
            load_prompts(path)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ValueError, match="not a retention prompts file"):
        load_prompts(tmp_path / "list.json")


@pytest.mark.parametrize(("check", "answer", "expected"), [
    ({"type": "number", "value": 12}, "12", True),
    ({"type": "number", "value": 12}, "7 + 5 = 12.", True),
    ({"type": "number", "value": 12}, "The answer is twelve.", True),
    ({"type": "number", "value": 12}, "7 + 5 = 13", False),
    ({"type": "number", "value": 12}, "11, 12, 13", False),  # 12 somewhere in a list is not an answer
    ({"type": "number", "value": 12}, "I do not know.", False),
    ({"type": "number", "value": 2000}, "1000 + 1000 = 2,000", True),
    ({"type": "number", "value": 24}, "There are twenty-four hours in a day.", True),
    ({"type": "number", "value": 0}, "Water freezes at zero degrees.", True),
    ({"type": "contains", "value": "paris"}, "The capital of France is PARIS!", True),
    ({"type": "contains", "value": "paris"}, "It is Lyon.", False),
    ({"type": "contains", "value": "red"}, "It has a hundred petals.", False),  # whole words only
    ({"type": "contains", "value": ["small", "little"]}, "little", True),
    ({"type": "contains", "value": "h2o"}, "Its formula is H₂O.", True),
    ({"type": "exact", "value": "yellow"}, " Yellow. ", True),
    ({"type": "exact", "value": "yellow"}, "It is yellow.", False),
    ({"type": "exact", "value": ["cow", "a cow"]}, "A cow!", True),
    ({"type": "regex", "value": r"^\W*yes\b"}, "Yes, the sun is very hot.", True),
    ({"type": "regex", "value": r"^\W*yes\b"}, "No. Well, yes.", False),
    ({"type": "regex", "value": r"\bHELLO\b", "case_sensitive": True}, "HELLO", True),
    ({"type": "regex", "value": r"\bHELLO\b", "case_sensitive": True}, "Hello", False),
])
def test_checks_on_written_answers(check, answer, expected):
    assert passes(check, answer) is expected


def test_list_and_format_checks_from_the_file():
    three_fruits = BY_ID["format-014"].check
    assert passes(three_fruits, "1. Apple\n2. Banana\n3. Cherry")
    assert passes(three_fruits, "Here are three fruits:\n1. Apple\n2. Pear\n3. Plum")
    assert not passes(three_fruits, "1. Apple\n2. Banana")
    assert not passes(three_fruits, "1. Apple\n2. Banana\n3. Cherry\n4. Mango")
    assert not passes(three_fruits, "Apple, banana and cherry.")
    rome_in_capitals = BY_ID["format-006"].check
    assert passes(rome_in_capitals, "ROME") and not passes(rome_in_capitals, "Rome")
    assert numbers_in("one hundred and 3.5") == [100.0, 3.5]


def test_a_limit_mixes_kinds_the_same_way_every_time():
    chosen = select_prompts(PROMPTS, 6, seed=0)
    assert [p.kind == "open" for p in chosen] == [False, True] * 3
    assert {p.kind for p in chosen if p.kind != "open"} == set(CHECKED_KINDS)
    assert chosen == select_prompts(PROMPTS, 6, seed=0)
    assert select_prompts(PROMPTS, None) == PROMPTS
    with pytest.raises(ValueError, match="limit"):
        RetentionConfig(limit=1)


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> RetentionConfig:
    return RetentionConfig(limit=6, max_tokens=16, cache_dir=str(tmp_path_factory.mktemp("retention-cache")))


@pytest.fixture(scope="module")
def perturbed_adapter(smollm2_dir, tmp_path_factory) -> str:
    """A LoRA adapter with random, nonzero B matrices: a student that has visibly moved away from the base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    directory = tmp_path_factory.mktemp("adapter") / "perturbed"
    get_peft_model(base, config).save_pretrained(directory)
    return str(directory)


@pytest.mark.real_model
def test_base_against_itself_loses_nothing(small_config, smollm2_dir):
    first = measure_retention(SMOLLM2, small_config)
    assert first.accuracy_drop == 0 and not first.regressions
    assert first.kl_per_token < 1e-6 and first.kl_prompts == 3 and first.kl_tokens >= 3
    assert [score.kind for score in first.scores] == [*CHECKED_KINDS, "all"] and first.scores[-1].n == 3
    assert not first.base_answers_cached
    # the same weights named by their directory: a separate load, and the base answers now come from the cache
    again = measure_retention(smollm2_dir, small_config)
    assert again.base_answers_cached and again.accuracy_drop == 0 and again.kl_per_token < 1e-6
    assert again.scores == first.scores
    assert json.loads(json.dumps(first.to_dict()))["accuracy_drop"] == 0


@pytest.mark.real_model
def test_a_perturbed_adapter_moves_away_from_the_base(small_config, perturbed_adapter):
    report = measure_retention(f"{SMOLLM2}+{perturbed_adapter}", small_config)
    assert report.kl_per_token > 1e-3 and report.kl_max_prompt >= report.kl_per_token
    assert report.base_answers_cached and report.scores[-1].n == 3


@pytest.mark.real_model
def test_cli_retention_json_and_table(small_config, monkeypatch):
    monkeypatch.setattr(retention, "retention_cache_dir", lambda: retention.Path(small_config.cache_dir))
    result = runner.invoke(app, ["finetune", "retention", SMOLLM2, "--limit", "2", "--max-tokens", "8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy_drop"] == 0 and report["kl_per_token"] < 1e-6 and report["scores"][-1]["n"] == 1
    table = runner.invoke(app, ["finetune", "retention", SMOLLM2, "--limit", "2", "--max-tokens", "8"])
    assert table.exit_code == 0 and "KL(base || tuned)" in table.stdout and "from the cache" in table.stdout


def test_cli_refuses_a_missing_adapter(tmp_path):
    result = runner.invoke(app, ["finetune", "retention", f"{SMOLLM2}+{tmp_path / 'nope'}", "--json"])
    assert result.exit_code == 2 and "does not exist" in " ".join(result.output.split())  # rich wraps lines
