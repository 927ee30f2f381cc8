"""Drift and decay: is what the served model now sees still what it was trained and promoted on?

Each model version gets a *reference* the first time the loop serves it (``OUT/references/VERSION.json``): the
category mix of the answerable questions of the contracts it was trained on, the presence gate's margins on them
(score minus the category's threshold: the retrieval-score distribution, and the gate pass rate as the share at
or above zero), and the thumbs-down share of the feedback it was tuned with. Each run profiles the *new* contracts
and the feedback that arrived since, and compares:

- category mix: total-variation distance between the two category shares;
- retrieval scores: the two-sample Kolmogorov-Smirnov statistic between the margins;
- gate pass rate: the absolute change;
- negative feedback: the rise of the thumbs-down share (with at least ``min_feedback`` new records).

The data signals are judged only with at least ``min_contracts`` new contracts: the category mix of a single
contract differs from any reference by chance, and a flag would double the cheapest incremental run.

A signal past its threshold is flagged, and the stages it affects re-run even when their inputs did not change
(the pipeline folds the flags into their fingerprints): data drift gives the incremental SFT stage
``budget_factor`` times its steps (the new contracts are further from what the adapter knows), and decay of the
served model (more thumbs-down) does the same for DPO on the feedback pairs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clauseloop.data import CuadDataset
from clauseloop.data.atomic import write_json_atomic

DATA_SIGNALS = ("category_mix", "retrieval_scores", "gate_pass_rate")
DECAY_SIGNALS = ("negative_feedback",)


@dataclass
class DriftConfig:
    """Thresholds past which a signal is flagged, and what a flag does."""

    category_mix: float = field(default=0.35, metadata={"help": "Total-variation distance of the category mix."})
    retrieval_scores: float = field(default=0.35, metadata={"help": "KS statistic of presence-gate margins."})
    gate_pass_rate: float = field(default=0.15, metadata={"help": "Absolute change of the gate pass rate."})
    negative_feedback: float = field(default=0.25, metadata={"help": "Rise of the thumbs-down share."})
    min_contracts: int = field(default=5, metadata={
        "help": "New contracts needed to judge data drift (one contract's category mix is noise, not drift)."})
    min_feedback: int = field(default=3, metadata={"help": "New feedback records needed to judge decay."})
    budget_factor: int = field(default=2, metadata={"help": "Step multiplier of a stage re-run because of drift."})


def profile(dataset: CuadDataset, contract_ids: list[str], feedback: list) -> dict[str, Any]:
    """Category mix, presence-gate margins and thumbs-down share of ``contract_ids`` and ``feedback``."""
    from clauseloop.data import CATEGORY_NAMES
    from clauseloop.retrieval.gate import default_gate

    chosen = set(contract_ids)
    mix: dict[str, int] = {}
    for question in dataset.questions:
        if question.contract_id in chosen and not question.is_impossible:
            mix[question.category] = mix.get(question.category, 0) + 1
    gate, margins = default_gate(), []
    for contract_id in sorted(chosen):
        for category in CATEGORY_NAMES:
            threshold = gate.threshold(category)
            if threshold is not None:
                margins.append(round(gate.score(dataset.contracts[contract_id], category) - threshold, 4))
    downs = sum(1 for record in feedback if record.vote == "down")
    return {"contracts": len(chosen), "category_mix": mix, "margins": margins,
            "feedback": len(feedback), "negative_feedback": downs / len(feedback) if feedback else None}


def total_variation(left: dict[str, int], right: dict[str, int]) -> float:
    left_total, right_total = sum(left.values()) or 1, sum(right.values()) or 1
    return 0.5 * sum(abs(left.get(key, 0) / left_total - right.get(key, 0) / right_total)
                     for key in set(left) | set(right))


def ks_statistic(left: list[float], right: list[float]) -> float:
    """The largest gap between the two empirical distribution functions."""
    left_sorted, right_sorted = np.sort(left), np.sort(right)
    points = np.concatenate([left_sorted, right_sorted])
    left_cdf = np.searchsorted(left_sorted, points, side="right") / len(left_sorted)
    right_cdf = np.searchsorted(right_sorted, points, side="right") / len(right_sorted)
    return float(np.max(np.abs(left_cdf - right_cdf)))


def pass_rate(margins: list[float]) -> float:
    return float(np.mean(np.asarray(margins) >= 0))


def compare(reference: dict[str, Any], current: dict[str, Any], config: DriftConfig) -> dict[str, Any]:
    """Each signal's value, threshold and flag; ``None`` values where the run has nothing to compare."""
    values: dict[str, float | None] = dict.fromkeys(DATA_SIGNALS + DECAY_SIGNALS)
    if current["contracts"] >= config.min_contracts and reference["contracts"]:
        values["category_mix"] = total_variation(reference["category_mix"], current["category_mix"])
        if reference["margins"] and current["margins"]:
            values["retrieval_scores"] = ks_statistic(reference["margins"], current["margins"])
            values["gate_pass_rate"] = pass_rate(current["margins"]) - pass_rate(reference["margins"])
    if current["feedback"] >= config.min_feedback:
        values["negative_feedback"] = current["negative_feedback"] - (reference["negative_feedback"] or 0.0)
    signals = {}
    for name, value in values.items():
        threshold = getattr(config, name)
        # data drift is a change either way; decay is a *rise* of the thumbs-down share
        flagged = value is not None and (abs(value) if name in DATA_SIGNALS else value) > threshold
        signals[name] = {"value": None if value is None else round(value, 4), "threshold": threshold,
                         "flagged": flagged}
    flagged = [name for name, signal in signals.items() if signal["flagged"]]
    return {"signals": signals, "flagged": flagged, "data_drift": any(n in DATA_SIGNALS for n in flagged),
            "decay": any(n in DECAY_SIGNALS for n in flagged)}


def reference_for(directory: Path, version: str, build) -> dict[str, Any]:
    """The reference of ``version``: made by ``build()`` the first time, then read back, so it never moves."""
    file = directory / "references" / f"{version}.json"
    if file.exists():
        return json.loads(file.read_text(encoding="utf-8"))
    reference = build()
    write_json_atomic(file, reference)
    return reference


def check_drift(directory: Path, dataset: CuadDataset, version: str, reference_contracts: list[str],
                reference_feedback: list, new_contracts: list[str], new_feedback: list,
                config: DriftConfig) -> dict[str, Any]:
    """The drift report of one loop run (also what the pipeline uses to decide which stages re-run)."""
    reference = reference_for(directory, version,
                              lambda: profile(dataset, reference_contracts, reference_feedback))
    current = profile(dataset, new_contracts, new_feedback)
    report = compare(reference, current, config)
    report.update(reference={"version": version, "contracts": reference["contracts"],
                             "feedback": reference["feedback"]},
                  current={"contracts": current["contracts"], "feedback": current["feedback"]},
                  config=asdict(config))
    return report
