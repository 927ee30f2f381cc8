"""The SFT dataset file: rows in the student's prompt format, append-only, resumable, no dev/test contract."""

from __future__ import annotations

import json

import pytest

from clauseloop.finetune.dataset import LeakError, SFTDataset
from clauseloop.finetune.rows import render_row, shown_part
from clauseloop.data import Contract


def row(contract_id: str = "c1", quotes=("The laws of Oregon govern.",), source: str = "gold", task: str = "Governing Law"):
    return render_row(task=task, passages="[1] The laws of Oregon govern.", quotes=list(quotes), source=source,
                      contract_id=contract_id, category="Governing Law")


def test_row_is_trl_prompt_completion_in_the_programs_chat_format():
    r = row()
    assert [m["role"] for m in r["prompt"]] == ["system", "user"] and r["completion"][0]["role"] == "assistant"
    assert "[[ ## passages ## ]]\n[1] The laws of Oregon govern." in r["prompt"][1]["content"]
    assert r["completion"][0]["content"].startswith("[[ ## clauses ## ]]\nThe laws of Oregon govern.")
    assert "NONE" in row(quotes=())["completion"][0]["content"]
    with pytest.raises(ValueError, match="unknown row source"):
        row(source="web")


def test_rows_are_the_prompt_contractqa_sends(demo_dataset):
    """The prompt of a row is byte for byte what the program's LM receives for the same inputs."""
    import dspy
    from dspy.utils import DummyLM

    from clauseloop.program.qa import ContractQA, QAConfig

    contract = next(iter(demo_dataset.contracts.values()))
    passages = "[1] " + contract.text[:200]
    lm = DummyLM([{"clauses": "NONE"}])
    program = ContractQA({contract.id: contract}, retriever=lambda c, q, k: [], config=QAConfig(gate=False))
    with dspy.context(lm=lm):
        program.extract(category="Parties", passages=passages)
    sent = lm.history[-1]["messages"]
    assert render_row(task="Parties", passages=passages, quotes=[], source="gold", contract_id=contract.id,
                      category="Parties")["prompt"] == sent


def test_shown_part_clips_to_the_window_at_word_boundaries():
    contract = Contract("c", "c", "Alpha beta gamma delta epsilon zeta")
    assert shown_part(contract, 0, 35, [(8, 25)]) == "gamma delta"  # "eta" and "eps" are half words
    assert shown_part(contract, 0, 10, [(20, 30)]) == ""
    assert shown_part(contract, 6, 16, [(0, 35)]) == "beta gamma"


def test_append_dedupes_resumes_and_repairs_a_cut_line(tmp_path):
    path = tmp_path / "train.jsonl"
    dataset = SFTDataset(path)
    assert dataset.append([row(), row(), row(quotes=())]) == 2
    dataset.mark_done("gold", "c1", {"answerable": 1})
    with path.open("a") as handle:
        handle.write('{"prompt": [')  # a kill mid-write
    again = SFTDataset(path)
    assert len(again.rows()) == 2 and again.is_done("gold", "c1") and not again.is_done("gold", "c2")
    assert again.append([row()]) == 0
    report = again.report()
    assert report["rows_per_source"] == {"gold": 2} and report["none_share"] == 0.5
    assert report["counts"]["gold"] == {"duplicates_removed": 2, "answerable": 1}


def test_a_dev_or_test_contract_is_refused(tmp_path):
    dataset = SFTDataset(tmp_path / "train.jsonl", forbidden_contracts={"dev-1"})
    with pytest.raises(LeakError, match="dev-1.*not in the training split"):
        dataset.append([row("dev-1")])
    assert dataset.rows() == []
    (tmp_path / "old.jsonl").write_text(json.dumps(row("dev-1")) + "\n")
    with pytest.raises(LeakError):
        SFTDataset(tmp_path / "old.jsonl", forbidden_contracts={"dev-1"})


def test_corrupted_rows_or_state_say_how_to_recover(tmp_path):
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match="remove the file"):
        SFTDataset(tmp_path / "bad.jsonl")
    (tmp_path / "ok.jsonl").write_text("")
    (tmp_path / "ok.jsonl.state.json").write_text("{")
    with pytest.raises(ValueError, match="delete it"):
        SFTDataset(tmp_path / "ok.jsonl")
