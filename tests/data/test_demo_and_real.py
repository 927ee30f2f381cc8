"""The shipped demo contracts, and the real CUAD file when it is present."""

from __future__ import annotations

from collections import Counter

from clauseloop.data import CATEGORY_NAMES, load_cuad
from clauseloop.data.stats import dataset_stats


def assert_offsets_exact(dataset) -> int:
    checked = 0
    for question in dataset.questions:
        text = dataset.contracts[question.contract_id].text
        for span in question.answers:
            assert text[span.start : span.end] == span.text, question.id
            checked += 1
    return checked


def test_demo_contracts_load_and_validate(demo_dataset):
    assert 6 <= len(demo_dataset.contracts) <= 10
    assert not demo_dataset.skipped
    per_contract = Counter(q.contract_id for q in demo_dataset.questions)
    assert set(per_contract.values()) == {41}
    assert {q.category for q in demo_dataset.questions} == set(CATEGORY_NAMES)
    assert assert_offsets_exact(demo_dataset) > 0


def test_demo_contracts_cover_categories_with_no_answer_questions(demo_dataset):
    stats = dataset_stats(demo_dataset)
    answered = [name for name, row in stats["per_category"].items() if row["answerable"]]
    assert len(answered) >= 12
    assert 0.15 <= stats["answerable_share"] <= 0.5  # plenty of no-answer questions, like real CUAD
    assert any(len(q.answers) >= 2 for q in demo_dataset.questions)


def test_real_cuad_file(real_cuad_path):
    dataset = load_cuad(real_cuad_path)
    stats = dataset_stats(dataset)
    assert (stats["contracts"], stats["questions"], stats["answerable"]) == (460, 18860, 6055)
    assert stats["categories"] == 41
    assert {q.category for q in dataset.questions} == set(CATEGORY_NAMES)
    assert assert_offsets_exact(dataset) == stats["answer_spans"]


def test_demo_json_is_built_from_its_sources():
    """The shipped JSON must match scripts/demo_sources (rebuild with `python3 scripts/build_demo.py`)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "scripts" / "build_demo.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
