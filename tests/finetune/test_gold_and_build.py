"""Gold rows, teacher traces and `clauseloop finetune data` on the demo contracts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from clauseloop.cli import app
from clauseloop.data import split_of
from clauseloop.finetune.build import DataConfig, build_dataset
from clauseloop.finetune.dataset import SFTDataset
from clauseloop.finetune.gold import GoldRowsConfig, build_gold_rows, none_count

runner = CliRunner()


@pytest.fixture(scope="module")
def train(demo_dataset):
    return split_of(demo_dataset, "train")


@pytest.fixture(scope="module")
def program(train):
    from clauseloop.program.qa import ContractQA

    return ContractQA(train.contracts)


@pytest.fixture(scope="module")
def gold_file(tmp_path_factory, train, program):
    dataset = SFTDataset(tmp_path_factory.mktemp("gold") / "gold.jsonl")
    build_gold_rows(dataset, train, program, GoldRowsConfig(none_share=0.3))
    return dataset


def passages_of(row: dict) -> str:
    user = row["prompt"][1]["content"]
    return user.split("[[ ## passages ## ]]\n", 1)[1].split("\n\nRespond with", 1)[0]


def test_gold_quotes_are_verbatim_prompt_text_and_overlap_the_gold(gold_file, train):
    from clauseloop.program.metrics import jaccard

    rows = gold_file.rows()
    answered = [r for r in rows if r["quotes"]]
    assert answered and {r["source"] for r in rows} == {"gold"}
    questions = {q.id: q for q in train.questions}
    for r in answered:
        gold_texts = [a.text for a in questions[r["question_id"]].answers]
        for quote in r["quotes"]:
            assert quote in passages_of(r)  # the student can copy it from its prompt
            assert max(jaccard(g, quote) for g in gold_texts) > 0 or any(quote in " ".join(g.split()) for g in gold_texts)


def test_none_rows_follow_the_share_and_the_counts_add_up(gold_file):
    report = gold_file.report()
    counts = report["counts"]["gold"]
    answered = sum(bool(r["quotes"]) for r in gold_file.rows())
    assert answered == counts["answerable"] - counts["gold_not_shown"]
    assert 0.15 <= report["none_share"] <= 0.45
    assert counts["none_gated"] > 0  # the gate removes easy negatives


def test_none_count_is_exact_in_expectation():
    import random

    rng = random.Random(0)
    assert none_count(7, 0.0, rng) == 0
    total = sum(none_count(7, 0.3, rng) for _ in range(2000))
    assert abs(total / 2000 - 3.0) < 0.1


def test_rebuilding_skips_done_contracts(gold_file, train, program):
    again = SFTDataset(gold_file.path)
    assert build_gold_rows(again, train, program) == 0
    assert len(again.rows()) == len(gold_file.rows())


def test_build_refuses_other_splits_and_never_holds_dev_or_test(tmp_path, demo_dataset):
    with pytest.raises(ValueError, match="train split only"):
        DataConfig(out=str(tmp_path / "x.jsonl"), split="dev")
    report = build_dataset(DataConfig(out=str(tmp_path / "d.jsonl"), sources=("gold",), limit_contracts=2))
    splits = {name: set(split_of(demo_dataset, name).contracts) for name in ("dev", "test")}
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert rows and report["contracts"] == 2
    assert not {r["contract_id"] for r in rows} & (splits["dev"] | splits["test"])
    on_disk = json.loads((tmp_path / "d.jsonl.report.json").read_text())
    assert on_disk["rows"] == len(rows) and on_disk["counts"]["gold"]["seconds"] >= 0


def test_cli_builds_gold_rows_and_refuses_the_dev_split(tmp_path):
    out = tmp_path / "cli.jsonl"
    result = runner.invoke(app, ["finetune", "data", "--sources", "gold", "--limit-contracts", "1",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_per_source"]["gold"] == len(out.read_text().splitlines())
    refused = runner.invoke(app, ["finetune", "data", "--split", "dev", "--out", str(out)])
    assert refused.exit_code == 2 and "train split only" in refused.output
    unknown = runner.invoke(app, ["finetune", "data", "--sources", "gold,web", "--out", str(out)])
    assert unknown.exit_code == 2 and "unknown source" in unknown.output
    no_judge = runner.invoke(app, ["finetune", "data", "--judge-threshold", "0.5", "--out", str(out)])
    assert no_judge.exit_code == 2 and "--judge" in no_judge.output
