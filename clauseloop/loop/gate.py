"""The promotion gate: a candidate replaces the current model only if it is not worse and has not forgotten.

Both models answer the same fixed questions (the evaluation stage's nbest predictions). For AUPR and F1 the gate
draws contracts with replacement (questions, when there are fewer than ``min_contracts``) — the *same* draw for
both models, so each bootstrap sample is a paired difference — and refuses the candidate when the whole confidence interval of (candidate − current) lies below zero, that is,
when it is worse beyond noise. It also refuses when a category group's F1 drops by more than ``group_drop`` (groups
with fewer than ``group_min_questions`` questions are too noisy to judge and are listed as unchecked), when the
dropped-span rate rises by more than ``dropped_slack``, or when retention accuracy falls more than
``retention_points`` below the base model's. The decision carries every number it used, for the report and the
registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from clauseloop.data.categories import BUILTIN_CATEGORIES
from clauseloop.program.scoring import contract_tables, curve_metrics, summary_metrics
from clauseloop.program.types import GoldQuestion

NBest = Mapping[str, Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the promotion gate."""

    metrics: tuple[str, ...] = field(default=("aupr", "f1"), metadata={"help": "Metrics that must not drop."})
    confidence_level: float = field(default=0.95, metadata={"help": "Of the paired bootstrap interval."})
    bootstrap_draws: int = field(default=1000, metadata={"help": "Contract resamples."})
    min_contracts: int = field(default=5, metadata={"help": "Fewer evaluation contracts: resample questions instead "
                                                            "(an interval over one contract has no width)."})
    group_drop: float = field(default=0.15, metadata={"help": "Largest allowed F1 drop of one category group."})
    # One question flips a 6-question group's F1 by 0.17: below 10 questions a group's F1 is noise, not a regression.
    group_min_questions: int = field(default=10, metadata={"help": "Smaller groups are reported, not judged."})
    dropped_slack: float = field(default=0.02, metadata={"help": "Largest allowed rise of the dropped-span rate."})
    retention_points: float = field(default=2.0, metadata={"help": "Largest allowed retention accuracy drop."})
    seed: int = 0


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str]
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _group_of(category: str) -> str:
    """CUAD's category group ("1"…"6") where it has one; an ungrouped category is its own group."""
    groups = {c.name: c.group for c in BUILTIN_CATEGORIES}
    group = groups.get(category, "-")
    return f"group {group}" if group != "-" else category


def _metrics(counts: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    return {**curve_metrics(counts), **summary_metrics(rows)}


def resampling_unit(golds: Sequence[GoldQuestion], config: GateConfig) -> str:
    return "contracts" if len({g.contract_id for g in golds}) >= config.min_contracts else "questions"


def paired_bootstrap(golds: Sequence[GoldQuestion], candidate: NBest, current: NBest,
                     config: GateConfig) -> dict[str, dict[str, Any]]:
    """Per metric: both models' values, their difference and its paired percentile interval over contracts (over
    questions when there are fewer than ``min_contracts``)."""
    if resampling_unit(golds, config) == "questions":  # each question its own unit
        golds = [replace(gold, contract_id=gold.question_id) for gold in golds]
    tables = [contract_tables(golds, nbest) for nbest in (candidate, current)]
    flat = [t.counts.reshape(len(t.counts), -1) for t in tables]
    point = [_metrics(t.counts.sum(axis=0), t.rows.sum(axis=0)) for t in tables]
    rng = np.random.default_rng(config.seed)
    n = len(tables[0].contract_ids)
    differences: dict[str, list[float]] = {name: [] for name in config.metrics}
    for _ in range(config.bootstrap_draws):
        weights = np.bincount(rng.integers(0, n, n), minlength=n)
        draws = [_metrics((weights @ f).reshape(3, -1), weights @ t.rows) for f, t in zip(flat, tables)]
        for name in config.metrics:
            differences[name].append(draws[0][name] - draws[1][name])
    tail = 100 * (1 - config.confidence_level) / 2
    result = {}
    for name in config.metrics:
        values = np.asarray(differences[name], dtype=np.float64)
        values = values[~np.isnan(values)]
        low, high = np.percentile(values, [tail, 100 - tail]).tolist() if len(values) else (0.0, 0.0)
        result[name] = {"candidate": point[0][name], "current": point[1][name],
                        "difference": point[0][name] - point[1][name], "ci": [low, high]}
    return result


def group_f1(golds: Sequence[GoldQuestion], nbest: NBest) -> dict[str, tuple[float, int]]:
    """Mean question F1 and question count per category group."""
    scores = contract_tables(golds, nbest).question_scores
    totals: dict[str, list[float]] = {}
    for gold, score in zip(golds, scores):
        totals.setdefault(_group_of(gold.category), []).append(score.f1)
    return {group: (float(np.mean(values)), len(values)) for group, values in sorted(totals.items())}


def _group_reasons(golds, candidate: NBest, current: NBest, config: GateConfig, evidence: dict) -> list[str]:
    new, old = group_f1(golds, candidate), group_f1(golds, current)
    reasons, groups = [], {}
    for group, (f1, count) in new.items():
        drop = old[group][0] - f1
        judged = count >= config.group_min_questions
        groups[group] = {"candidate_f1": f1, "current_f1": old[group][0], "questions": count, "judged": judged}
        if judged and drop > config.group_drop:
            reasons.append(f"{group}: F1 {old[group][0]:.3f} → {f1:.3f} (drop {drop:.3f} > {config.group_drop})")
    evidence["groups"] = groups
    return reasons


def decide(golds: Sequence[GoldQuestion], candidate: NBest, current: NBest, config: GateConfig = GateConfig(), *,
           dropped_rates: tuple[float, float] | None = None, retention_drop: float | None = None) -> GateDecision:
    """The gate's verdict. ``dropped_rates``: (candidate, current); ``retention_drop``: points below the base."""
    evidence: dict[str, Any] = {"questions": len(golds), "contracts": len({g.contract_id for g in golds}),
                                "resampled": resampling_unit(golds, config), "config": asdict(config)}
    reasons = []
    evidence["metrics"] = paired_bootstrap(golds, candidate, current, config)
    for name, row in evidence["metrics"].items():
        if row["ci"][1] < 0:
            reasons.append(f"{name} {row['current']:.3f} → {row['candidate']:.3f}: worse beyond the paired "
                           f"{config.confidence_level:.0%} interval [{row['ci'][0]:+.3f}, {row['ci'][1]:+.3f}]")
    reasons += _group_reasons(golds, candidate, current, config, evidence)
    if dropped_rates is not None:
        evidence["dropped_span_rate"] = {"candidate": dropped_rates[0], "current": dropped_rates[1]}
        if dropped_rates[0] > dropped_rates[1] + config.dropped_slack:
            reasons.append(f"dropped-span rate {dropped_rates[1]:.3f} → {dropped_rates[0]:.3f}")
    if retention_drop is not None:
        evidence["retention_drop_points"] = retention_drop
        if retention_drop > config.retention_points:
            reasons.append(f"retention accuracy {retention_drop:.1f} points below the base (> {config.retention_points})")
    return GateDecision(promote=not reasons, reasons=reasons, evidence=evidence)
