"""`clauseloop index build | search | eval` on the demo contracts with the real MiniLM."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clauseloop.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_search_and_eval_refuse_a_missing_or_broken_index(tmp_path):
    result = invoke("index", "search", str(tmp_path / "nope"), "governing law")
    assert result.exit_code == 2 and "clauseloop index build" in result.output and "Traceback" not in result.output
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "passages.jsonl").write_text("{}\n")
    result = invoke("index", "eval", str(tmp_path / "half"))
    assert result.exit_code == 2 and "rebuild" in result.output
    assert invoke("index", "build", "--out", str(tmp_path / "x"), "--overlap", "700").exit_code == 2


@pytest.mark.real_model
def test_build_search_eval_round_trip(tmp_path, demo_dataset):
    out = str(tmp_path / "index")
    result = invoke("index", "build", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"{len(demo_dataset.contracts)} contracts" in result.output and "reused 0" in result.output
    again = invoke("index", "build", "--out", out)
    assert "embedded 0 contracts / 0 passages" in again.output  # nothing changed: nothing re-embedded

    contract = next(q.contract_id for q in demo_dataset.questions if q.category == "Governing Law" and q.answers)
    result = invoke("index", "search", out, "Governing Law", "--contract", contract, "--k", "3", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    text = demo_dataset.contracts[contract].text
    assert len(hits) == 3 and all(text[h["start"] : h["end"]] == h["text"] for h in hits)
    assert "law" in " ".join(h["text"].lower() for h in hits)
    assert "score" in invoke("index", "search", out, "assignment consent", "--k", "2").output

    result = invoke("index", "eval", out, "--split", "all", "--k", "1,5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["spans"] > 0 and 0 < report["recall@1"] <= report["recall@5"] <= 1
    assert "Governing Law" in report["per_category"]
    table = invoke("index", "eval", out, "--split", "all", "--mode", "lexical")
    assert "recall@10" in table.output and "Parties" in table.output
    assert invoke("index", "eval", out, "--k", "five").exit_code == 2
    assert invoke("index", "search", out, "x", "--contract", "no-such-contract").exit_code == 2


def test_fit_queries_writes_a_directory_that_eval_and_search_can_use(tmp_path, demo_dataset):
    fitted = str(tmp_path / "fitted")
    result = invoke("index", "fit-queries", "--split", "all", "--out", fitted, "--no-dense")
    assert result.exit_code == 0, result.output
    assert "categories" in result.output and (tmp_path / "fitted" / "manifest.json").exists()
    assert invoke("index", "fit-queries", "--split", "nope", "--out", fitted).exit_code == 2
    result = invoke("index", "fit-queries", "--gate-folds", "1", "--out", fitted)
    assert result.exit_code == 2 and "at least 2" in result.output

    broken = tmp_path / "broken"
    broken.mkdir()
    result = invoke("index", "eval", str(tmp_path / "no-index"), "--queries", str(broken))
    assert result.exit_code == 2 and "fit-queries" in result.output and "Traceback" not in result.output


@pytest.mark.real_model
def test_eval_with_fitted_hand_written_and_default_queries(tmp_path, demo_dataset):
    out, fitted = str(tmp_path / "index"), str(tmp_path / "fitted")
    assert invoke("index", "build", "--out", out).exit_code == 0
    assert invoke("index", "fit-queries", "--split", "all", "--out", fitted, "--no-dense").exit_code == 0
    reports = {}
    for queries in (fitted, "none", None):
        args = ["index", "eval", out, "--split", "all", "--json"] + (["--queries", queries] if queries else [])
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        reports[queries] = json.loads(result.stdout)
    # Fitted and evaluated on the same 8 contracts, the learned terms must at least match the hand-written ones.
    assert reports[fitted]["recall@5"] >= reports["none"]["recall@5"]
    contract = next(q.contract_id for q in demo_dataset.questions if q.category == "Audit Rights" and q.answers)
    result = invoke("index", "search", out, "Audit Rights", "--contract", contract, "--queries", fitted, "--k", "2")
    assert result.exit_code == 0 and "audit" in result.output.lower()


@pytest.mark.real_model
def test_tune_embedder_writes_an_embedder_and_queries_that_build_and_search_use(tmp_path, monkeypatch, demo_dataset):
    monkeypatch.setenv("CLAUSELOOP_CACHE", str(tmp_path / "cache"))
    fitted, tuned, out = str(tmp_path / "fitted"), tmp_path / "tuned", str(tmp_path / "index")
    assert invoke("index", "fit-queries", "--split", "all", "--out", fitted, "--sample-contracts", "2",
                  "--gate-folds", "0").exit_code == 0
    result = invoke("index", "tune-embedder", "--split", "all", "--queries", fitted, "--out", str(tuned),
                    "--max-passages", "32")
    assert result.exit_code == 0, result.output
    assert (tuned / "embedder" / "layers.safetensors").exists() and "--embedder" in result.output
    queries = json.loads((tuned / "queries" / "manifest.json").read_text())
    assert queries["embedder"] == str((tuned / "embedder").resolve()) and queries["tuned"]["head_init"] == "minilm-l6"
    assert invoke("index", "build", "--out", out, "--embedder", str(tuned / "embedder")).exit_code == 0
    contract = next(q.contract_id for q in demo_dataset.questions if q.category == "Audit Rights" and q.answers)
    result = invoke("index", "search", out, "Audit Rights", "--contract", contract, "--queries",
                    str(tuned / "queries"), "--k", "2")
    assert result.exit_code == 0 and "audit" in result.output.lower()
    assert invoke("index", "tune-embedder", "--queries", "none", "--out", str(tuned)).exit_code == 2


@pytest.mark.real_model
def test_fit_queries_with_a_classifier_writes_one_that_search_uses(tmp_path, monkeypatch, demo_dataset):
    monkeypatch.setenv("CLAUSELOOP_CACHE", str(tmp_path / "cache"))
    fitted, out = tmp_path / "fitted", str(tmp_path / "index")
    result = invoke("index", "fit-queries", "--split", "all", "--out", str(fitted), "--no-dense", "--gate-folds", "0",
                    "--classifier")
    assert result.exit_code == 0 and "a passage classifier" in result.output, result.output
    assert (fitted / "classifier" / "layers.safetensors").exists()
    assert json.loads((fitted / "manifest.json").read_text())["classifier"]["tune"]["layers"] == 6
    assert invoke("index", "build", "--out", out).exit_code == 0
    contract = next(q.contract_id for q in demo_dataset.questions if q.category == "Audit Rights" and q.answers)
    result = invoke("index", "search", out, "Audit Rights", "--contract", contract, "--queries", str(fitted))
    assert result.exit_code == 0 and "audit" in result.output.lower()
