"""`evaluate`: question selection, the retrieval baseline, and the real program writing its report and plot."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from clauseloop.cli import app
from clauseloop.program.evaluation import EvalConfig, evaluate, stratified_questions


def test_stratified_limit_takes_every_category_in_turn(demo_dataset):
    chosen = stratified_questions(demo_dataset.questions, 82, seed=1)
    assert len(chosen) == 82 and len({q.id for q in chosen}) == 82
    assert set(Counter(q.category for q in chosen).values()) == {2}
    assert chosen == stratified_questions(demo_dataset.questions, 82, seed=1)
    assert stratified_questions(demo_dataset.questions, None) == demo_dataset.questions


def test_stratified_limit_can_sample_categories_in_a_seeded_order(demo_dataset):
    alphabetical = {q.category for q in stratified_questions(demo_dataset.questions, 5, seed=1)}
    assert alphabetical == set(sorted({q.category for q in demo_dataset.questions})[:5])
    draws = [{q.category for q in stratified_questions(demo_dataset.questions, 5, seed, shuffle_categories=True)}
             for seed in range(4)]
    assert all(len(draw) == 5 for draw in draws) and len({frozenset(d) for d in draws}) > 1
    again = stratified_questions(demo_dataset.questions, 5, 1, shuffle_categories=True)
    assert draws[1] == {q.category for q in again}


@pytest.mark.real_model
def test_retrieval_baseline_report_on_demo(tmp_path):
    report = evaluate(EvalConfig(program="retrieval", split="all", limit=82, out_dir=str(tmp_path),
                                 bootstrap_draws=200, export_nbest=str(tmp_path / "nbest.json")))
    overall = report["overall"]
    assert report["data"]["questions"] == 82
    # Whole passages rarely reach Jaccard 0.5 with a one-sentence gold clause: the floor is low, and honest.
    assert 0.0 <= overall["aupr"] <= 1.0 and overall["laziness"] < 1.0
    low, high = overall["ci"]["aupr"]
    assert low <= overall["aupr"] <= high
    assert len(report["per_category"]) == 41
    nbest = json.loads((tmp_path / "nbest.json").read_text())
    assert len(nbest) == 82 and all(isinstance(v, list) and v for v in nbest.values())
    for name in ("report.json", "report.md", "pr_curve.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "pr_curve.png").read_bytes()[:4] == b"\x89PNG"
    curve = json.loads((tmp_path / "report.json").read_text())["pr_curve"]  # the points, for the reports page
    assert 2 <= len(curve["recall"]) == len(curve["precision"]) <= 201 and curve["precision"][0] == 1.0


@pytest.mark.real_model
def test_evaluate_cli_with_real_student(tmp_path, smollm2_dir):
    result = CliRunner().invoke(app, ["evaluate", "--split", "all", "--limit", "4", "--out", str(tmp_path),
                                      "--json", "--threads", "4"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"]["questions"] == 4 and report["config"]["program"] == "zero-shot"
    assert report["questions_per_second"] > 0
    assert 0.0 <= report["hallucination_rate"] <= 1.0
    assert "| AUPR |" in (tmp_path / "report.md").read_text() and "presence gate" in (tmp_path / "report.md").read_text()
    assert 0 <= report["gated"] <= 4 and report["config"]["gate"] is True


@pytest.mark.real_model
def test_ask_cli_highlights_spans(smollm2_dir):
    result = CliRunner().invoke(app, ["ask", "HALVORSEN", "Governing Law", "--program", "retrieval", "--json"])
    assert result.exit_code == 0, result.output
    spans = json.loads(result.stdout)["spans"]
    assert spans and "Pennsylvania" in spans[0]["text"]
    result = CliRunner().invoke(app, ["ask", "no-such-contract", "Parties"])
    assert result.exit_code == 2 and "no contracts match" in result.output


@pytest.mark.real_model
def test_ask_cli_reports_a_gated_category_and_can_skip_the_gate(smollm2_dir):
    """HALVORSEN (a demo supply agreement) has no source-code escrow: the gate answers without the LM."""
    result = CliRunner().invoke(app, ["ask", "HALVORSEN", "Source Code Escrow", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) | {"contract": None} == {
        "contract": None, "category": "Source Code Escrow", "spans": [], "dropped": 0, "gated": True}
    result = CliRunner().invoke(app, ["ask", "HALVORSEN", "Source Code Escrow"])
    assert result.exit_code == 0 and "not asked" in result.output
    result = CliRunner().invoke(app, ["ask", "HALVORSEN", "Source Code Escrow", "--no-gate", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["gated"] is False
