"""Write an evaluation report: JSON (everything), Markdown (tables for people), PNG (precision-recall curve)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

HEADLINE = (
    ("aupr", "AUPR"),
    ("prec_at_80_recall", "P@80R"),
    ("prec_at_90_recall", "P@90R"),
    ("f1", "F1"),
    ("no_answer_accuracy", "no-answer acc."),
    ("laziness", "laziness"),
)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _with_ci(overall: dict, key: str) -> str:
    low, high = overall.get("ci", {}).get(key, [None, None])
    interval = f" [{_fmt(low)}, {_fmt(high)}]" if low is not None else ""
    return _fmt(overall.get(key)) + interval


def markdown_report(report: dict) -> str:
    overall, config, data = report["overall"], report["config"], report["data"]
    lines = [
        f"# Evaluation: `{config['program']}` on {data['source']} ({config['split']})",
        "",
        f"{data['questions']} questions from {data['contracts']} contracts, data fingerprint `{data['fingerprint']}`; "
        f"LM `{config['lm']}`; {report['seconds']} s ({report['questions_per_second']} questions/s).",
        "",
        "| metric | value [95 % CI over contracts] |",
        "|---|---|",
        *[f"| {label} | {_with_ci(overall, key)} |" for key, label in HEADLINE],
        f"| hallucination (dropped-span) rate | {_fmt(report['hallucination_rate'])} |",
        f"| failed / unparseable predictions | {report['failed_predictions']} / {report['parse_failures']} |",
        f"| answered \"no clause\" by the presence gate (no LM call) | {report.get('gated', 0)} |",
    ]
    if "judge" in report:
        lines.append(f"| LLM judge (`{report['judge']['judge_lm']}`) mean | {_fmt(report['judge']['mean'])} |")
    lines += ["", "## Per category", "", "| category | questions | AUPR | P@80R | F1 | no-answer acc. |", "|---|---|---|---|---|---|"]
    for category, row in report["per_category"].items():
        lines.append(
            f"| {category} | {row['n_questions']} | {_fmt(row['aupr'])} | {_fmt(row['prec_at_80_recall'])} | "
            f"{_fmt(row.get('f1'))} | {_fmt(row.get('no_answer_accuracy'))} |"
        )
    return "\n".join(lines) + "\n"


def plot_curve(curve: Any, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    if curve is not None:
        axes.plot(curve.recalls, curve.precisions, marker=".", linewidth=1)
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def curve_points(curve: Any, max_points: int = 200) -> dict[str, list[float]] | None:
    """The curve as ``{"recall": [...], "precision": [...]}`` (at most ``max_points``, ends kept) for the JSON."""
    if curve is None:
        return None
    pairs = [(r, p) for r, p in zip(curve.recalls, curve.precisions) if not (math.isnan(r) or math.isnan(p))]
    step = max(1, math.ceil(len(pairs) / max_points))
    kept = pairs[::step] + ([pairs[-1]] if pairs and (len(pairs) - 1) % step else [])
    return {"recall": [round(r, 4) for r, _ in kept], "precision": [round(p, 4) for _, p in kept]}


def write_report(report: dict, curve: Any, out_dir: Path) -> dict[str, str]:
    """Write the three files into ``out_dir`` and return their paths; the JSON also holds the curve's points."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "report.json", "markdown": out_dir / "report.md", "plot": out_dir / "pr_curve.png"}
    plot_curve(curve, f"{report['config']['program']}: AUPR {_fmt(report['overall']['aupr'])}", files["plot"])
    files["markdown"].write_text(markdown_report(report))
    paths = {name: str(path) for name, path in files.items()}
    document = {**report, "files": paths, "pr_curve": curve_points(curve)}
    files["json"].write_text(json.dumps(document, indent=2, ensure_ascii=False))
    return paths
