"""The feedback store: validation, flags, round trips, stats, JSON-lines import/export, concurrent writers."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from clauseloop.feedback import (
    FLAG_UNKNOWN_CATEGORY,
    FLAG_UNKNOWN_CONTRACT,
    FLAG_UNKNOWN_MODEL,
    FeedbackError,
    FeedbackRecord,
    FeedbackSpan,
    FeedbackStore,
    contract_hash,
)

CONTRACT = contract_hash("This Agreement shall be governed by the laws of Delaware.")


def record(**changes) -> FeedbackRecord:
    values = dict(
        contract_hash=CONTRACT, vote="up", category="Governing Law", model_version="smollm2-135m-instruct",
        spans=(FeedbackSpan("governed by the laws of Delaware", 20, 52),), user="alice",
    )
    return FeedbackRecord(**{**values, **changes})


@pytest.fixture
def store(tmp_path):
    with FeedbackStore(tmp_path / "fb" / "feedback.db") as opened:
        yield opened


def test_add_get_round_trip_in_wal_mode(store):
    corrected = (FeedbackSpan("This Agreement shall be governed by the laws of Delaware.", 0, 57),)
    first = record(vote="down", corrected_spans=corrected, comment="whole sentence <b>please</b>")
    record_id = store.add(first)
    stored = store.get(record_id)
    assert stored.id == record_id and stored.flags == ()
    assert stored.spans == first.spans and stored.corrected_spans == corrected and stored.comment == first.comment
    assert store.get(record_id).to_dict() == {**first.to_dict(), "id": record_id}
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with pytest.raises(KeyError, match="no feedback with id 999"):
        store.get(999)


def test_from_dict_validates_with_field_names():
    good = {"contract_hash": CONTRACT, "vote": "down", "question": "Who pays?",
            "spans": [{"text": "x", "start": 1, "end": 2}]}
    assert FeedbackRecord.from_dict(good).spans == (FeedbackSpan("x", 1, 2),)
    cases = [
        ({**good, "vote": "meh"}, "vote: must be 'up' or 'down'"),
        ({k: v for k, v in good.items() if k != "vote"}, "contract_hash and vote are required"),
        ({**good, "question": None}, "give the category or the question"),
        ({**good, "spans": [{"text": "x", "start": 5, "end": 2}]}, r"spans\[0\]: end \(2\) is before start"),
        ({**good, "spans": [{"text": "x", "start": -1, "end": 2}]}, r"spans\[0\].start: must be a non-negative"),
        ({**good, "spans": [{"text": "", "start": 1, "end": 2}]}, r"spans\[0\].text: a span needs non-empty text"),
        ({**good, "spans": "x"}, "spans: a list of spans"),
        ({**good, "colour": "red"}, r"unknown field\(s\) \['colour'\]"),
        ({**good, "time": "yesterday"}, "time: an ISO 8601 time"),
        ({**good, "comment": 5}, "comment: must be a string"),
    ]
    for data, message in cases:
        with pytest.raises(FeedbackError, match=message):
            FeedbackRecord.from_dict(data)


def test_unknown_contract_model_and_category_are_kept_and_flagged(tmp_path):
    with FeedbackStore(tmp_path / "f.db", contract_known=lambda h: h == CONTRACT,
                       model_known=lambda m: m == "smollm2-135m-instruct") as store:
        known = store.add(record())
        strange = store.add(record(contract_hash="feedc0de", model_version="gpt-9", category="Secret Sauce"))
        unversioned = store.add(record(model_version=""))
        assert store.get(known).flags == ()
        expected = tuple(sorted([FLAG_UNKNOWN_CONTRACT, FLAG_UNKNOWN_MODEL, FLAG_UNKNOWN_CATEGORY]))
        assert store.get(strange).flags == expected
        assert store.get(unversioned).flags == (FLAG_UNKNOWN_MODEL,)
        assert [r.id for r in store.list(flagged=True)] == [strange, unversioned]
        assert store.stats()["flagged"] == 2


def test_exact_duplicate_is_stored_once(store):
    one = record(time="2025-01-01T00:00:00+00:00")
    assert store.add(one) == store.add(one)
    assert store.add(record(time="2025-01-01T00:00:01+00:00")) != store.add(one)
    assert store.count() == 2


def test_list_filters_and_stats(store):
    store.add(record(vote="up"))
    store.add(record(vote="down", category="Parties"))
    store.add(record(vote="down", category=None, question="Who may terminate?", model_version="v2"))
    assert len(store.list(vote="down")) == 2 and len(store.list(category="Parties")) == 1
    assert len(store.list(limit=1)) == 1 and len(store.list(offset=2)) == 1
    stats = store.stats()
    assert stats["total"] == 3 and stats["by_vote"] == {"up": 1, "down": 2}
    assert stats["by_category"] == {"(question)": 1, "Governing Law": 1, "Parties": 1}
    assert stats["by_model_version"] == {"smollm2-135m-instruct": 2, "v2": 1}
    assert stats["negative_rate"] == pytest.approx(2 / 3, abs=1e-4)
    empty = FeedbackStore(store.path.with_name("empty.db")).stats()
    assert empty["total"] == 0 and empty["negative_rate"] is None and empty["by_vote"] == {"up": 0, "down": 0}


def test_export_import_round_trip_skips_duplicates(tmp_path, store):
    for vote in ("up", "down", "up"):
        store.add(record(vote=vote, comment=f"é {vote}"))
    exported = tmp_path / "out" / "feedback.jsonl"
    assert store.export_jsonl(exported) == 3
    with FeedbackStore(tmp_path / "other.db") as other:
        other.add(store.get(1))  # already there: the import skips it
        result = other.import_jsonl(exported)
        assert (result.added, result.duplicates) == (2, 1)
        assert other.import_jsonl(exported).duplicates == 3
        assert sorted(r.comment for r in other.list()) == sorted(r.comment for r in store.list())


def test_a_bad_line_aborts_the_whole_import(tmp_path, store):
    lines = [json.dumps(record(time="2025-01-01T00:00:00+00:00").to_dict()), '{"vote": "up"']
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FeedbackError, match=r"bad.jsonl:2: not JSON"):
        store.import_jsonl(path)
    path.write_text(lines[0] + "\n" + json.dumps({"contract_hash": "x", "vote": "sideways", "category": "Parties"}))
    with pytest.raises(FeedbackError, match=r"bad.jsonl:2.vote"):
        store.import_jsonl(path)
    assert store.count() == 0
    with pytest.raises(FileNotFoundError, match="no such feedback file"):
        store.import_jsonl(tmp_path / "missing.jsonl")


def test_fifty_concurrent_writers_lose_nothing(tmp_path):
    with FeedbackStore(tmp_path / "busy.db") as store:
        barrier, ids, errors = threading.Barrier(50), [], []

        def write(writer: int) -> None:
            try:
                barrier.wait()
                for n in range(4):
                    ids.append(store.add(record(user=f"user{writer}", comment=str(n))))
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(set(ids)) == 200 and store.count() == 200
        expected = {(f"user{w}", str(n)) for w in range(50) for n in range(4)}
        assert {(r.user, r.comment) for r in store.list()} == expected
    with FeedbackStore(tmp_path / "busy.db") as reopened:  # a second store on the same file sees it all
        assert reopened.count() == 200


def test_the_feedback_commands_import_export_and_count(tmp_path, store):
    from typer.testing import CliRunner

    from clauseloop.cli import app

    store.add(record(vote="down", time="2025-01-01T00:00:00+00:00"))
    store.add(record(vote="up", time="2025-01-02T00:00:00+00:00"))
    runner, exported, copy = CliRunner(), tmp_path / "fb.jsonl", tmp_path / "copy.db"
    result = runner.invoke(app, ["feedback", "export", str(exported), "--db", str(store.path)])
    assert result.exit_code == 0 and "2 records" in result.output
    result = runner.invoke(app, ["feedback", "import", str(exported), "--db", str(copy)])
    assert result.exit_code == 0 and "2 added, 0 duplicates" in result.output
    result = runner.invoke(app, ["feedback", "import", str(exported), "--db", str(copy)])
    assert "0 added, 2 duplicates" in result.output
    result = runner.invoke(app, ["feedback", "stats", "--db", str(copy), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["by_vote"] == {"up": 1, "down": 1}
    result = runner.invoke(app, ["feedback", "stats", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "no feedback database" in result.output
