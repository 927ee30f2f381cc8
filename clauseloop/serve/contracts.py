"""Contracts the server was given, in SQLite by content hash (text checked by :mod:`clauseloop.data.text`)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from clauseloop.data import Contract
from clauseloop.data.text import contract_text
from clauseloop.feedback import contract_hash

BUSY_TIMEOUT_MS = 30_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS contracts (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL, chars INTEGER NOT NULL, added REAL NOT NULL
);
"""


class ContractStore:
    """Contracts by id (the hash of their text) in the SQLite file ``path``; thread-safe."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def add(self, text: str, title: str | None = None) -> tuple[Contract, bool]:
        """Store a contract (validated text); returns it and whether it was new. The same text keeps its id."""
        text = contract_text(text)
        contract_id = contract_hash(text)
        title = (title or "").strip() or _title_of(text)
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO contracts (id, title, text, chars, added) VALUES (?, ?, ?, ?, ?)",
                (contract_id, title[:200], text, len(text), time.time()),
            )
        return self.get(contract_id), cursor.rowcount == 1

    def get(self, contract_id: str) -> Contract:
        with self._lock:
            row = self._db.execute("SELECT id, title, text FROM contracts WHERE id = ?", (contract_id,)).fetchone()
        if row is None:
            raise KeyError(f"unknown contract {contract_id!r}; POST its text to /api/contracts first")
        return Contract(id=row[0], title=row[1], text=row[2])

    def __contains__(self, contract_id: object) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM contracts WHERE id = ?", (contract_id,)).fetchone() is not None

    def summaries(self, limit: int = 100) -> list[dict]:
        with self._lock:
            rows = self._db.execute("SELECT id, title, chars, added FROM contracts ORDER BY added DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [{"id": r[0], "title": r[1], "chars": r[2], "added": r[3]} for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _title_of(text: str) -> str:
    """The first non-empty line, shortened: contracts open with their name."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "contract")
    return first if len(first) <= 80 else first[:79].rstrip() + "…"
