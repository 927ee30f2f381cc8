"""The CLI is thin over the library: check its outputs and its error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clauseloop.cli import app
from clauseloop.data import load_cuad

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_data_stats_json_on_demo():
    result = invoke("data", "stats", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["contracts"] >= 6 and report["questions"] == 41 * report["contracts"]
    assert set(report["contract_chars"]) >= {"min", "median", "max"}


def test_data_stats_table_and_split():
    assert "answerable" in invoke("data", "stats").output
    result = invoke("data", "split", "--json")
    parts = json.loads(result.stdout)
    assert sorted(parts) == ["dev", "test", "train"]
    assert invoke("data", "split", "--train", "0.9").exit_code == 2


def test_bad_file_gives_clean_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = invoke("data", "stats", str(bad))
    assert result.exit_code == 2
    assert "bad.json" in result.output and "Traceback" not in result.output


def test_shifted_answer_start_is_named(tmp_path, real_cuad_path):
    import gzip

    doc = json.loads(gzip.open(real_cuad_path, "rt", encoding="utf-8").read())
    victim = doc["data"][7]["paragraphs"][0]["qas"][1]
    victim["answers"][0]["answer_start"] += 3
    shifted = tmp_path / "shifted.json"
    shifted.write_text(json.dumps(doc))
    result = invoke("data", "stats", str(shifted))
    assert result.exit_code == 2 and victim["id"] in result.output.replace("\n", "")
    assert invoke("data", "stats", str(shifted), "--lenient", "--json").exit_code == 0


def test_models_list():
    result = invoke("models", "list")
    assert result.exit_code == 0 and "smollm2-135m-instruct" in result.output and "minilm-l6" in result.output


def test_models_prepare_missing_dir_is_clean():
    result = invoke("models", "prepare", "./no/such/model")
    assert result.exit_code == 2 and "no such directory" in result.output


@pytest.mark.real_model
def test_models_prepare_and_generate_real(smollm2_dir):
    result = invoke("models", "prepare", "smollm2-135m-instruct")
    assert result.exit_code == 0 and "cached" in result.output
    result = invoke("models", "generate", "smollm2-135m-instruct", "Say hello.", "--max-new-tokens", "6")
    assert result.exit_code == 0 and result.output.strip()


@pytest.mark.real_model
def test_main_job_runs_offline(smollm2_dir, tmp_path):
    result = invoke("run", "--json", "--limit", "12", "--out", str(tmp_path), "--no-loop")  # the loop: tests/loop
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["stats"]["contracts"] >= 6
    review = report["review"]
    contract = load_cuad("demo").contracts[review["contract"]]
    for spans in review["spans"].values():  # whatever the small model says, the spans are contract text
        assert all(contract.text[s["start"] : s["end"]] == s["text"] for s in spans)
    assert not set(review["gated"]) & set(review["spans"])  # a gated category has no spans
    assert set(report["evaluation"]) == {"retrieval", "zero-shot"}
    for row in report["evaluation"].values():
        assert row["questions"] == 12 and 0.0 <= row["f1"] <= 1.0
        assert (tmp_path / Path(row["report"]).relative_to(tmp_path)).is_file()


def test_loop_config_errors_are_clean(tmp_path):
    missing = invoke("loop", "--config", str(tmp_path / "nope.toml"))
    assert missing.exit_code == 2 and "nope.toml" in missing.output and "Traceback" not in missing.output
    misspelled = tmp_path / "loop.toml"
    misspelled.write_text("[loop]\nsft_step = 3\n")
    result = invoke("loop", "--config", str(misspelled))
    assert result.exit_code == 2 and "sft_step" in result.output and "Traceback" not in result.output
