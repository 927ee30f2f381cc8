"""The contract split (deterministic, disjoint, on target) and the category catalogue."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clauseloop.data import BUILTIN_CATEGORIES, load_categories
from clauseloop.data.categories import category_from_question, get_category, question_for
from clauseloop.data.split import SplitConfig, assign_splits

TITLES = [f"COMPANY{i}_01_01_2000-EX-10-AGREEMENT" for i in range(137)]


def test_split_is_deterministic_across_processes():
    here = assign_splits(TITLES)
    code = (
        "import json; from clauseloop.data.split import assign_splits; "
        f"print(json.dumps(assign_splits({TITLES!r})))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    assert json.loads(other.stdout) == here
    assert assign_splits(list(reversed(TITLES))) == here


@pytest.mark.parametrize("n", [3, 10, 46, 137, 460])
def test_split_proportions_within_one_contract(n):
    config = SplitConfig()
    counts = {"train": 0, "dev": 0, "test": 0}
    for split in assign_splits(TITLES[:n] if n <= len(TITLES) else [f"T{i}" for i in range(n)], config).values():
        counts[split] += 1
    for name, share in (("train", config.train), ("dev", config.dev), ("test", config.test)):
        assert abs(counts[name] - share * n) <= 1, (name, counts)


def test_split_salt_changes_assignment_and_bad_config_fails():
    assert assign_splits(TITLES, SplitConfig(salt="x")) != assign_splits(TITLES)
    with pytest.raises(ValueError, match="sum to 1"):
        SplitConfig(train=0.9, dev=0.2, test=0.1)


def test_dataset_split_keeps_questions_with_their_contract(demo_dataset):
    from clauseloop.data import split_dataset

    parts = split_dataset(demo_dataset)
    seen = set()
    for part in parts.values():
        assert not seen & set(part.contracts)
        seen |= set(part.contracts)
        assert all(q.contract_id in part.contracts for q in part.questions)
    assert seen == set(demo_dataset.contracts)
    assert sum(len(p.questions) for p in parts.values()) == len(demo_dataset.questions)


def test_builtin_catalogue():
    assert len(BUILTIN_CATEGORIES) == 41
    assert len({c.name for c in BUILTIN_CATEGORIES}) == 41
    assert get_category("governing law").name == "Governing Law"
    with pytest.raises(KeyError, match="known categories"):
        get_category("Coffee Breaks")
    question = question_for(get_category("Parties"))
    assert category_from_question(question) == "Parties"
    assert category_from_question("What law applies?") is None
    from clauseloop.data import canonical_name

    assert canonical_name("Cap On Liability") == "Cap on Liability"  # CUAD's files title-case some names
    assert canonical_name("Custom Category") == "Custom Category"


def test_catalogue_from_official_style_csv(tmp_path):
    csv_path = tmp_path / "category_descriptions.csv"
    csv_path.write_text(
        "\ufeffCategory (incl. context and answer),Description,Answer Format,Group\n"
        "Category: Governing Law,Description: Which law\u00a0 governs?,Answer Format: State,Group: -\n",
        encoding="utf-8",
    )
    (category,) = load_categories(csv_path)
    assert (category.name, category.description, category.answer_format) == ("Governing Law", "Which law governs?", "State")


def test_catalogue_matches_shared_csv(real_cuad_path):
    csv_path = real_cuad_path.parent / "category_descriptions.csv"
    assert load_categories(csv_path) == BUILTIN_CATEGORIES
