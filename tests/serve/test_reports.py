"""`GET /api/reports` and `GET /reports` over real HTTP: benchmark tables, evaluate reports with their PR curve."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest

from tests.serve.conftest import RunningServer

TABLE_MD = """### QA program (`bench/qa.py`)

Dev split: 410 questions.

| baseline | AUPR | F1 |
|---|---|---|
| retrieval | 0.189 [0.139, 0.260] | **0.466** |
"""


def bench_report() -> dict:
    overall = {"aupr": 0.189, "f1": 0.466, "laziness": 0.14, "n_questions": 410,
               "ci": {"aupr": [0.139, 0.26], "f1": [0.418, 0.52]}}
    return {"machine": {"cpus": 2}, "baselines": {"retrieval": {"overall": overall, "hallucination_rate": 0.0}}}


def evaluate_report(out: Path) -> None:
    """What `clauseloop evaluate --out DIR` writes, through the same writer."""
    from clauseloop.program.report import write_report
    from clauseloop.program.scoring import PRCurve

    recalls = tuple([0.0] + [i / 500 for i in range(500)] + [math.nan])
    curve = PRCurve(precisions=tuple([1.0] + [1 - i / 1000 for i in range(500)] + [math.nan]), recalls=recalls)
    overall = {"aupr": 0.42, "prec_at_80_recall": 0.1, "f1": 0.5, "ci": {"aupr": [0.3, 0.5]}}
    report = {"config": {"program": "zero-shot", "split": "dev", "lm": "base"}, "overall": overall,
              "data": {"source": "demo", "questions": 41, "contracts": 1, "fingerprint": "f"}, "seconds": 1.0,
              "questions_per_second": 41.0, "hallucination_rate": 0.2, "failed_predictions": 0, "parse_failures": 0,
              "per_category": {}}
    write_report(report, curve, out)


@pytest.fixture(scope="module")
def reports_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("reports")
    (directory / "qa.json").write_text(json.dumps(bench_report()))
    (directory / "qa.md").write_text(TABLE_MD)
    (directory / "broken.json").write_text("{not json")
    evaluate_report(directory / "eval-run")
    return directory


@pytest.fixture(scope="module")
def reports_client(tmp_path_factory, reports_dir, offline_litellm):
    from clauseloop.serve import ServeConfig

    db = tmp_path_factory.mktemp("reports-db") / "clauseloop.db"
    config = ServeConfig(db=str(db), student="base", port=0, reports_dir=str(reports_dir), openai_api=False)
    with RunningServer(config) as running, httpx.Client(base_url=running.url, timeout=60) as http:
        yield http


def test_reports_hold_metrics_with_ci_and_the_markdown_tables(reports_client, reports_dir):
    body = reports_client.get("/api/reports").json()
    assert body["directory"] == str(reports_dir)
    reports = {report["name"]: report for report in body["reports"]}
    assert set(reports) == {"qa", "eval-run/report"}  # the broken file is skipped
    qa = reports["qa"]
    assert qa["title"] == "QA program (bench/qa.py)"
    (evaluation,) = qa["evaluations"]
    assert evaluation["name"] == "baselines / retrieval" and evaluation["pr_curve"] is None
    metrics = {m["key"]: m for m in evaluation["metrics"]}
    assert metrics["aupr"] == {"key": "aupr", "label": "AUPR", "value": 0.189, "ci": [0.139, 0.26]}
    assert metrics["laziness"]["ci"] is None and evaluation["extras"]["hallucination_rate"] == 0.0
    (table,) = qa["tables"]
    assert table["caption"] == "Dev split: 410 questions." and table["header"] == ["baseline", "AUPR", "F1"]
    assert table["rows"] == [["retrieval", "0.189 [0.139, 0.260]", "0.466"]]


def test_an_evaluate_report_carries_its_pr_curve_points(reports_client):
    body = reports_client.get("/api/reports").json()
    run = next(report for report in body["reports"] if report["name"] == "eval-run/report")
    (evaluation,) = run["evaluations"]
    curve = evaluation["pr_curve"]
    assert 100 <= len(curve["recall"]) <= 201 and len(curve["recall"]) == len(curve["precision"])
    assert curve["recall"][0] == 0.0 and curve["precision"][0] == 1.0 and curve["recall"][-1] == 0.998
    assert evaluation["extras"]["questions_per_second"] == 41.0
    assert [t["header"][0] for t in run["tables"]] == ["metric", "category"]


def test_the_reports_page_and_an_empty_directory(reports_client, tmp_path, offline_litellm):
    from clauseloop.serve import ServeConfig

    page = reports_client.get("/reports")
    assert page.status_code == 200 and "/static/reports.js" in page.text
    assert 'href="/reports"' in reports_client.get("/").text
    config = ServeConfig(db=str(tmp_path / "c.db"), student="base", port=0, reports_dir=str(tmp_path / "none"),
                         openai_api=False)
    with RunningServer(config) as running:
        assert httpx.get(f"{running.url}/api/reports").json()["reports"] == []


def test_the_default_directory_is_the_checkouts_bench_results(client):
    body = client.get("/api/reports").json()
    results = Path(__file__).resolve().parents[2] / "bench" / "results"
    assert body["directory"] == str(results)
    qa = next(report for report in body["reports"] if report["name"] == "qa")
    names = {evaluation["name"] for evaluation in qa["evaluations"]}
    assert {"baselines / retrieval", "baselines / zero-shot"} <= names
