"""Drift signals: what is flagged, what is not, and a reference that is kept once made."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from clauseloop.loop.drift import DriftConfig, check_drift, compare, ks_statistic, profile, total_variation


def snapshot(mix=None, margins=(0.1, -0.2, 0.3, 0.5), contracts=5, feedback=0, negative=None) -> dict:
    return {"contracts": contracts, "category_mix": mix or {"Parties": 10, "Governing Law": 5},
            "margins": list(margins), "feedback": feedback, "negative_feedback": negative}


def test_the_same_data_flags_nothing():
    report = compare(snapshot(), snapshot(), DriftConfig())
    assert report["flagged"] == [] and not report["data_drift"] and not report["decay"]
    assert report["signals"]["category_mix"]["value"] == 0.0
    assert report["signals"]["negative_feedback"]["value"] is None  # no feedback: nothing to judge


def test_a_different_category_mix_and_score_distribution_are_data_drift():
    shifted = snapshot(mix={"Non-Compete": 9, "Parties": 1}, margins=(-1.0, -0.9, -0.8, -0.7))
    report = compare(snapshot(), shifted, DriftConfig())
    assert {"category_mix", "retrieval_scores", "gate_pass_rate"} <= set(report["flagged"])
    assert report["data_drift"] and not report["decay"]
    assert report["signals"]["gate_pass_rate"]["value"] == -0.75


def test_data_drift_is_judged_only_with_enough_new_contracts():
    shifted = snapshot(mix={"Non-Compete": 9, "Parties": 1}, margins=(-1.0, -0.9, -0.8, -0.7), contracts=1)
    report = compare(snapshot(), shifted, DriftConfig(min_contracts=5))
    assert report["flagged"] == [] and report["signals"]["category_mix"]["value"] is None
    assert compare(snapshot(), shifted, DriftConfig(min_contracts=1))["data_drift"]


def test_negative_feedback_is_decay_only_with_enough_records():
    config = DriftConfig(min_feedback=3)
    assert not compare(snapshot(), snapshot(feedback=2, negative=1.0), config)["decay"]
    report = compare(snapshot(feedback=4, negative=0.25), snapshot(feedback=3, negative=1.0), config)
    assert report["decay"] and report["signals"]["negative_feedback"]["value"] == 0.75
    # fewer thumbs-down than before is no decay
    assert not compare(snapshot(feedback=4, negative=0.75), snapshot(feedback=3, negative=0.0), config)["decay"]


def test_distances():
    assert total_variation({"a": 1}, {"b": 1}) == 1.0
    assert total_variation({"a": 1, "b": 1}, {"a": 2, "b": 2}) == 0.0
    assert ks_statistic([0, 1, 2, 3], [0, 1, 2, 3]) == 0.0
    assert ks_statistic([0, 1], [5, 6]) == 1.0
    assert ks_statistic([0, 1, 2, 3], [2, 3, 4, 5]) == pytest.approx(0.5)


def test_profile_and_a_reference_that_never_moves(demo_dataset, tmp_path):
    contracts = sorted(demo_dataset.contracts)
    votes = [SimpleNamespace(vote="down"), SimpleNamespace(vote="up")]
    first = profile(demo_dataset, contracts[:2], votes)
    assert first["contracts"] == 2 and first["negative_feedback"] == 0.5
    assert len(first["margins"]) % 2 == 0 and first["margins"]  # one per gated category of each contract
    assert sum(first["category_mix"].values()) > 0

    report = check_drift(tmp_path, demo_dataset, "v1", contracts[:2], [], contracts[2:3], [], DriftConfig())
    assert report["reference"] == {"version": "v1", "contracts": 2, "feedback": 0}
    again = check_drift(tmp_path, demo_dataset, "v1", contracts[2:], [], contracts[2:3], [], DriftConfig())
    assert again["reference"]["contracts"] == 2  # read back, not rebuilt from the new arguments
    assert (tmp_path / "references" / "v1.json").exists()
