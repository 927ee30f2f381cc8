"""Loaders: every official layout, gzip, the hub schema, and every validation error naming its culprit."""

from __future__ import annotations

import gzip
import json

import pytest

from clauseloop.data import CuadFormatError, load_cuad, question_for
from clauseloop.data.categories import get_category

TEXT_A = "DISTRIBUTOR AGREEMENT between Acme Corp. and Beta LLC. This Agreement is governed by the laws of Ohio."
TEXT_B = "LICENSE AGREEMENT. Licensee shall not assign this Agreement without consent."


def qa(title: str, category: str, answers: list[tuple[str, int]], suffix: str = "") -> dict:
    return {
        "id": f"{title}__{category}{suffix}",
        "question": question_for(get_category(category)),
        "answers": [{"text": text, "answer_start": start} for text, start in answers],
        "is_impossible": not answers,
    }


def squad_doc() -> dict:
    parties = [("Acme Corp.", TEXT_A.index("Acme")), ("Beta LLC", TEXT_A.index("Beta"))]
    law = [("This Agreement is governed by the laws of Ohio.", TEXT_A.index("This Agreement is"))]
    assign = [("Licensee shall not assign this Agreement without consent.", TEXT_B.index("Licensee"))]
    return {
        "version": "test",
        "data": [
            {"title": "A", "paragraphs": [{"context": TEXT_A, "qas": [
                qa("A", "Parties", parties), qa("A", "Governing Law", law), qa("A", "Anti-Assignment", [])]}]},
            {"title": "B", "paragraphs": [{"context": TEXT_B, "qas": [
                qa("B", "Parties", []), qa("B", "Anti-Assignment", assign)]}]},
        ],
    }


def write(tmp_path, doc, name="CUADv1.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_cuadv1_layout(tmp_path):
    dataset = load_cuad(write(tmp_path, squad_doc()))
    assert set(dataset.contracts) == {"A", "B"}
    assert len(dataset.questions) == 5
    parties = dataset.questions[0]
    assert parties.category == "Parties" and parties.contract_id == "A"
    assert [a.text for a in parties.answers] == ["Acme Corp.", "Beta LLC"]
    assert parties.description == get_category("Parties").description
    impossible = [q for q in dataset.questions if not q.answerable]
    assert {q.id for q in impossible} == {"A__Anti-Assignment", "B__Parties"}
    assert all(q.is_impossible for q in impossible)


def test_gzip_same_as_plain(tmp_path):
    plain = load_cuad(write(tmp_path, squad_doc()))
    gz_path = tmp_path / "CUADv1.json.gz"
    with gzip.open(gz_path, "wt", encoding="utf-8") as handle:
        json.dump(squad_doc(), handle)
    assert load_cuad(gz_path).fingerprint() == plain.fingerprint()


def test_train_separate_questions_are_merged(tmp_path):
    doc = squad_doc()
    parties = doc["data"][0]["paragraphs"][0]["qas"][0]
    split_parts = [
        {**parties, "id": f"{parties['id']}_{i}", "answers": [answer]} for i, answer in enumerate(parties["answers"])
    ]
    doc["data"][0]["paragraphs"][0]["qas"][0:1] = split_parts
    merged = load_cuad(write(tmp_path, doc, "train_separate_questions.json"))
    assert merged.fingerprint() == load_cuad(write(tmp_path, squad_doc())).fingerprint()
    question = next(q for q in merged.questions if q.id == "A__Parties")
    assert len(question.answers) == 2


def test_test_json_layout_is_cuadv1_layout(tmp_path):
    dataset = load_cuad(write(tmp_path, squad_doc(), "test.json"))
    assert len(dataset.contracts) == 2


def hub_rows(doc: dict) -> list[dict]:
    rows = []
    for entry in doc["data"]:
        paragraph = entry["paragraphs"][0]
        for q in paragraph["qas"]:
            answers = {"text": [a["text"] for a in q["answers"]], "answer_start": [a["answer_start"] for a in q["answers"]]}
            rows.append({"id": q["id"], "title": entry["title"], "context": paragraph["context"],
                         "question": q["question"], "answers": answers})
    return rows


def test_hub_schema_through_datasets(tmp_path):
    import datasets

    parquet = tmp_path / "cuad-qa.parquet"
    datasets.Dataset.from_list(hub_rows(squad_doc())).to_parquet(str(parquet))
    from_hub = load_cuad(parquet)
    assert from_hub.fingerprint() == load_cuad(write(tmp_path, squad_doc())).fingerprint()
    saved = tmp_path / "saved"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(hub_rows(squad_doc()))}).save_to_disk(str(saved))
    from clauseloop.data import load_hub

    assert load_hub(str(saved), split="test").fingerprint() == from_hub.fingerprint()


def test_malformed_json_names_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"data": [')
    with pytest.raises(CuadFormatError, match="broken.json.*not valid JSON"):
        load_cuad(path)


def test_missing_field_names_contract_and_question(tmp_path):
    doc = squad_doc()
    del doc["data"][1]["paragraphs"][0]["qas"][1]["question"]
    with pytest.raises(CuadFormatError, match=r"contract 'B', question 'B__Anti-Assignment'.*missing field"):
        load_cuad(write(tmp_path, doc))
    doc = squad_doc()
    del doc["data"][0]["paragraphs"][0]["context"]
    with pytest.raises(CuadFormatError, match=r"contract 'A'.*context"):
        load_cuad(write(tmp_path, doc))


def test_shifted_answer_start_names_question(tmp_path):
    doc = squad_doc()
    doc["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] += 1
    with pytest.raises(CuadFormatError, match=r"CUADv1.json.*'A'.*'A__Governing Law'.*answer_start=\d+ does not index"):
        load_cuad(write(tmp_path, doc))


def test_duplicate_ids(tmp_path):
    doc = squad_doc()
    doc["data"][0]["paragraphs"][0]["qas"].append(doc["data"][0]["paragraphs"][0]["qas"][1])
    with pytest.raises(CuadFormatError, match="'A__Governing Law'.*duplicate question id"):
        load_cuad(write(tmp_path, doc))
    doc = squad_doc()
    doc["data"].append(doc["data"][0])
    with pytest.raises(CuadFormatError, match="'A'.*duplicate contract title"):
        load_cuad(write(tmp_path, doc))


def test_lenient_skips_and_reports_each_bad_record(tmp_path, caplog):
    doc = squad_doc()
    doc["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 0
    del doc["data"][1]["paragraphs"][0]["qas"][0]["id"]
    dataset = load_cuad(write(tmp_path, doc), lenient=True)
    assert len(dataset.questions) == 3
    assert len(dataset.skipped) == 2
    assert any("A__Governing Law" in line for line in dataset.skipped)
    assert sum("skipping" in record.message for record in caplog.records) == 2


def test_not_cuad_layout_and_missing_file(tmp_path):
    with pytest.raises(CuadFormatError, match="'data' list"):
        load_cuad(write(tmp_path, {"version": "x"}))
    with pytest.raises(FileNotFoundError, match="no such file.*demo"):
        load_cuad(tmp_path / "nope.json")
