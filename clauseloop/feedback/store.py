"""``FeedbackStore``: feedback records in one SQLite file (WAL mode), safe for many threads and processes.

Each thread gets its own connection (``busy_timeout`` waits out other writers); every write is one
``BEGIN IMMEDIATE`` transaction, so a record is stored whole or not at all, and an import is all or nothing.
A record whose contract or model version the store's owner does not know (``contract_known`` /
``model_known`` callables) is kept and flagged (see :mod:`clauseloop.feedback.records`).
An exact duplicate (same content, time included) is stored once: ``add`` returns the existing id, and
``import_jsonl`` skips and counts it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from clauseloop.data import CATEGORY_NAMES
from clauseloop.data.atomic import atomic_path
from clauseloop.feedback.records import (
    FLAG_UNKNOWN_CATEGORY,
    FLAG_UNKNOWN_CONTRACT,
    FLAG_UNKNOWN_MODEL,
    FeedbackError,
    FeedbackRecord,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
_COLUMNS = ("contract_hash", "category", "question", "model_version", "vote", "spans", "corrected_spans",
            "comment", "user", "time", "flags")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    digest TEXT NOT NULL UNIQUE,
    contract_hash TEXT NOT NULL, category TEXT, question TEXT, model_version TEXT NOT NULL,
    vote TEXT NOT NULL CHECK (vote IN ('up', 'down')),
    spans TEXT NOT NULL, corrected_spans TEXT, comment TEXT, user TEXT, time TEXT NOT NULL, flags TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_contract ON feedback (contract_hash);
CREATE INDEX IF NOT EXISTS feedback_category ON feedback (category);
CREATE INDEX IF NOT EXISTS feedback_model ON feedback (model_version);
PRAGMA user_version = {SCHEMA_VERSION};
"""


@dataclass(frozen=True)
class ImportResult:
    added: int
    duplicates: int


class FeedbackStore:
    """Feedback in the SQLite file ``path`` (created with its directory). Thread-safe; close() when done."""

    def __init__(
        self,
        path: str | Path,
        *,
        contract_known: Callable[[str], bool] | None = None,
        model_known: Callable[[str], bool] | None = None,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.contract_known, self.model_known = contract_known, model_known
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        connection = self._connection()
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise FeedbackError(f"{self.path}: feedback schema version {version}, this clauseloop reads "
                                f"{SCHEMA_VERSION}; export it with the clauseloop that wrote it")
        connection.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                         check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                logger.warning("%s: SQLite refused WAL mode (%s); concurrent readers will wait", self.path, mode)
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def flagged(self, record: FeedbackRecord) -> FeedbackRecord:
        """The record with the flags its contract, model version and category earn here."""
        flags = []
        if self.contract_known is not None and not self.contract_known(record.contract_hash):
            flags.append(FLAG_UNKNOWN_CONTRACT)
        if not record.model_version or (self.model_known is not None and not self.model_known(record.model_version)):
            flags.append(FLAG_UNKNOWN_MODEL)
        if record.category and record.category not in CATEGORY_NAMES:
            flags.append(FLAG_UNKNOWN_CATEGORY)
        return record.with_flags(*flags)

    def add(self, record: FeedbackRecord | dict) -> int:
        """Store one record (validated, flagged) and return its id; an exact duplicate returns the first one's id."""
        record = FeedbackRecord.from_dict(record) if isinstance(record, dict) else record
        record.check()
        with self._write() as db:
            return self._insert(db, self.flagged(record))[0]

    def _insert(self, db: sqlite3.Connection, record: FeedbackRecord) -> tuple[int, bool]:
        digest = record.digest()
        row = db.execute("SELECT id FROM feedback WHERE digest = ?", (digest,)).fetchone()
        if row is not None:
            return row[0], False
        values = _row_values(record)
        cursor = db.execute(
            f"INSERT INTO feedback (digest, {', '.join(_COLUMNS)}) VALUES (?{', ?' * len(_COLUMNS)})",
            (digest, *values),
        )
        return cursor.lastrowid, True

    def get(self, record_id: int) -> FeedbackRecord:
        row = self._connection().execute("SELECT * FROM feedback WHERE id = ?", (record_id,)).fetchone()
        if row is None:
            raise KeyError(f"no feedback with id {record_id} in {self.path}")
        return _record(row)

    def list(self, *, contract_hash: str | None = None, category: str | None = None, vote: str | None = None,
             model_version: str | None = None, flagged: bool | None = None, limit: int | None = None,
             offset: int = 0) -> list[FeedbackRecord]:
        """Records in id order, filtered by any of the keyword arguments."""
        where, params = [], []
        for column, value in (("contract_hash", contract_hash), ("category", category), ("vote", vote),
                              ("model_version", model_version)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if flagged is not None:
            where.append("flags != '[]'" if flagged else "flags = '[]'")
        sql = "SELECT * FROM feedback" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        sql += " LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
        return [_record(row) for row in self._connection().execute(sql, params)]

    def count(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM feedback").fetchone()[0]

    def stats(self) -> dict[str, Any]:
        """Counts by vote, category (or "(question)"), model version; the negative rate; flagged and corrected."""
        db = self._connection()

        def grouped(expression: str) -> dict[str, int]:
            rows = db.execute(f"SELECT {expression} AS key, COUNT(*) FROM feedback GROUP BY key ORDER BY key")
            return {row[0]: row[1] for row in rows}

        total = self.count()
        by_vote = {"up": 0, "down": 0, **grouped("vote")}
        return {
            "total": total,
            "by_vote": by_vote,
            "by_category": grouped("COALESCE(category, '(question)')"),
            "by_model_version": grouped("model_version"),
            "negative_rate": round(by_vote["down"] / total, 4) if total else None,
            "flagged": db.execute("SELECT COUNT(*) FROM feedback WHERE flags != '[]'").fetchone()[0],
            "corrected": db.execute("SELECT COUNT(*) FROM feedback WHERE corrected_spans IS NOT NULL").fetchone()[0],
        }

    def export_jsonl(self, path: str | Path) -> int:
        """Every record, one JSON object a line, written atomically; returns the count."""
        records = self.list()
        with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        return len(records)

    def import_jsonl(self, path: str | Path) -> ImportResult:
        """Add the records of a JSON-lines file (ids ignored) in one transaction; exact duplicates skipped, counted.

        A bad line aborts the import with its line number, and nothing of the file is stored.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such feedback file (JSON lines, from `clauseloop feedback export`)")
        records = list(_read_jsonl(path))
        added = duplicates = 0
        with self._write() as db:
            for record in records:
                if self._insert(db, self.flagged(record))[1]:
                    added += 1
                else:
                    duplicates += 1
        logger.info("%s: %d records added, %d duplicates skipped", path, added, duplicates)
        return ImportResult(added, duplicates)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __enter__(self) -> "FeedbackStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _read_jsonl(path: Path) -> Iterator[FeedbackRecord]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise FeedbackError(f"{where}: not JSON ({error.msg}); one record per line") from None
            if isinstance(data, dict):
                data.pop("id", None)
            yield FeedbackRecord.from_dict(data, where)


def _row_values(record: FeedbackRecord) -> tuple:
    data = record.to_dict()
    corrected = data["corrected_spans"]
    return (record.contract_hash, record.category, record.question, record.model_version, record.vote,
            json.dumps(data["spans"], ensure_ascii=False), None if corrected is None else json.dumps(corrected),
            record.comment, record.user, record.time, json.dumps(list(record.flags)))


def _record(row: sqlite3.Row) -> FeedbackRecord:
    data = {column: row[column] for column in _COLUMNS}
    data["spans"] = json.loads(data["spans"])
    data["corrected_spans"] = None if data["corrected_spans"] is None else json.loads(data["corrected_spans"])
    data["flags"] = json.loads(data["flags"])
    return FeedbackRecord.from_dict({**data, "id": row["id"]}, f"feedback {row['id']}")
