"""The evaluation reports the page shows: benchmark results and ``clauseloop evaluate`` reports, read from a directory.

A report is a ``*.json`` file in the directory (``bench/results/qa.json``) or a ``*/report.json`` one level down (a
``clauseloop evaluate --out DIR`` run). From each one: every evaluation in it (a dict with an ``overall`` metrics
dict: AUPR, P@80R, F1 … with their 95 % CIs, and the precision-recall curve points where the report has them), and
the tables of the Markdown file beside it (``qa.md``, ``report.md``), as header and rows of plain text.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
METRICS = (  # (key in "overall", label), in the order the page shows them
    ("aupr", "AUPR"),
    ("prec_at_80_recall", "P@80R"),
    ("prec_at_90_recall", "P@90R"),
    ("f1", "F1"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("no_answer_accuracy", "no-answer acc."),
    ("laziness", "laziness"),
)
EXTRAS = ("hallucination_rate", "questions_per_second", "gated", "n_questions")
MAX_REPORTS = 100


def reports_directory(configured: str | None) -> Path | None:
    """The configured directory, or the source checkout's ``bench/results`` if there is one (else None)."""
    if configured:
        return Path(configured).expanduser()
    return REPO_RESULTS if REPO_RESULTS.is_dir() else None


def load_reports(directory: Path | None) -> list[dict[str, Any]]:
    """Every readable report in ``directory``, by name; an unreadable one is logged and skipped."""
    if directory is None or not directory.is_dir():
        return []
    paths = sorted(directory.glob("*.json")) + sorted(directory.glob("*/report.json"))
    reports = []
    for path in paths[:MAX_REPORTS]:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            logger.warning("skipping unreadable report %s: %s", path, error)
            continue
        reports.append(report_summary(path, document, directory))
    return reports


def report_summary(path: Path, document: Any, root: Path) -> dict[str, Any]:
    name = str(path.relative_to(root).with_suffix(""))
    markdown = path.with_suffix(".md")
    text = markdown.read_text(encoding="utf-8", errors="replace") if markdown.is_file() else ""
    return {
        "name": name,
        "title": _title(text) or name,
        "evaluations": [_evaluation(where, found) for where, found in _evaluations(document)],
        "tables": markdown_tables(text),
    }


def _evaluations(document: Any, where: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict]]:
    if isinstance(document, dict):
        if isinstance(document.get("overall"), dict):
            yield where, document
            return
        for key, value in document.items():
            yield from _evaluations(value, (*where, str(key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _evaluations(value, (*where, str(index)))


def _evaluation(where: tuple[str, ...], found: dict) -> dict[str, Any]:
    overall = found["overall"]
    intervals = overall.get("ci") or {}
    metrics = [{"key": key, "label": label, "value": _number(overall.get(key)),
                "ci": [_number(v) for v in intervals[key]] if isinstance(intervals.get(key), list) else None}
               for key, label in METRICS if key in overall]
    extras = {key: _number(found.get(key, overall.get(key))) for key in EXTRAS if key in found or key in overall}
    return {"name": " / ".join(where) or "overall", "metrics": metrics, "extras": extras,
            "pr_curve": _curve(found.get("pr_curve"))}


def _curve(curve: Any) -> dict[str, list[float]] | None:
    if not isinstance(curve, dict):
        return None
    pairs = [(r, p) for r, p in zip(curve.get("recall") or [], curve.get("precision") or [])
             if _number(r) is not None and _number(p) is not None]
    if not pairs:
        return None
    return {"recall": [float(r) for r, _ in pairs], "precision": [float(p) for _, p in pairs]}


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _title(markdown: str) -> str:
    first = next((line for line in markdown.splitlines() if line.startswith("#")), "")
    return first.lstrip("#").replace("`", "").strip()


def markdown_tables(markdown: str) -> list[dict[str, Any]]:
    """The pipe tables of a Markdown text: ``{"caption", "header", "rows"}`` each, cells as plain text."""
    tables, block, caption, last_text = [], [], "", ""
    for line in [*markdown.splitlines(), ""]:
        if line.strip().startswith("|"):
            if not block:
                caption = last_text
            block.append(line.strip())
            continue
        if block:
            table = _table(block, caption)
            if table:
                tables.append(table)
            block = []
        if line.strip():
            last_text = line.strip().lstrip("#").replace("`", "").replace("**", "").strip()
    return tables


def _table(lines: list[str], caption: str) -> dict[str, Any] | None:
    rows = [[cell.strip().replace("`", "").replace("**", "") for cell in line.strip("|").split("|")]
            for line in lines]
    if len(rows) < 2 or not all(set(cell) <= set("-: ") for cell in rows[1]):
        return None
    return {"caption": caption, "header": rows[0], "rows": rows[2:]}
