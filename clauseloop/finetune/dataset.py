"""The SFT dataset file: append-only JSON lines, resumable, duplicate-free, never a dev or test contract.

``SFTDataset(path)`` opens (or creates) ``FILE.jsonl`` and its state file ``FILE.state.json``. Builders add rows
per *unit* of work (one source over one contract) and mark the unit done; a re-run skips done units, so a build
killed at any point continues where it stopped and loses at most the unit in flight. Rows are written and flushed
one by one; a last line cut by a kill is removed on the next open. A row whose ``id`` (prompt + completion hash)
is already in the file is not written again and is counted as a duplicate. Counters (filter counts, parse
failures, …) live in the state file next to the done units, so the report covers every run that built the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

from clauseloop.data.atomic import write_json_atomic

logger = logging.getLogger(__name__)

STATE_SUFFIX = ".state.json"


class LeakError(ValueError):
    """A row from a contract outside the training split: dev and test numbers would no longer mean anything."""


class SFTDataset:
    """An append-only JSONL of SFT rows with its build state. ``forbidden_contracts``: ids (dev and test
    contracts) no row may come from — appending one raises :class:`LeakError`."""

    def __init__(self, path: str | Path, forbidden_contracts: Iterable[str] = ()):
        self.path = Path(path)
        self.state_path = self.path.with_name(self.path.name + STATE_SUFFIX)
        self.forbidden = set(forbidden_contracts)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ids: set[str] = set()
        self.rows_by_source: Counter = Counter()
        self._repair_and_index()
        self.state = self._read_state()

    def _repair_and_index(self) -> None:
        if not self.path.exists():
            self.path.touch()
            return
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):
            # a kill mid-write leaves a partial last line: drop it (its unit is not marked done, so it is redone)
            keep = raw.rfind(b"\n") + 1
            logger.warning("%s: removing a partial last line left by an interrupted run", self.path)
            with self.path.open("r+b") as handle:
                handle.truncate(keep)
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{self.path}:{number} is not a JSON row ({error}); remove the file to rebuild the dataset"
                ) from None
            self._check_contract(row)
            self.ids.add(row["id"])
            self.rows_by_source[row["source"]] += 1

    def _read_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"done": {}, "counts": {}}
        try:
            return json.loads(self.state_path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{self.state_path} is corrupted ({error}); delete it to rebuild every unit (rows already in "
                f"{self.path.name} are kept and not duplicated)"
            ) from None

    def _check_contract(self, row: dict[str, Any]) -> None:
        if row.get("contract_id") in self.forbidden:
            raise LeakError(
                f"row {row.get('id')} comes from contract {row['contract_id']!r}, which is not in the training "
                "split; training rows may only come from train contracts (build with --split train)"
            )

    def is_done(self, source: str, unit: str) -> bool:
        return unit in self.state["done"].get(source, [])

    def append(self, rows: Iterable[dict[str, Any]]) -> int:
        """Write the rows not already in the file; returns how many were written (the rest count as duplicates)."""
        written = 0
        with self.path.open("a", encoding="utf-8") as handle:
            for row in rows:
                self._check_contract(row)
                if row["id"] in self.ids:
                    self.count(row["source"], "duplicates_removed")
                    continue
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                handle.flush()
                self.ids.add(row["id"])
                self.rows_by_source[row["source"]] += 1
                written += 1
            os.fsync(handle.fileno())
        return written

    def count(self, source: str, name: str, amount: int = 1) -> None:
        counts = self.state["counts"].setdefault(source, {})
        counts[name] = counts.get(name, 0) + amount

    def mark_done(self, source: str, unit: str, counts: dict[str, int] | None = None) -> None:
        """Record a finished unit (and its counters) atomically: a re-run skips it."""
        for name, amount in (counts or {}).items():
            self.count(source, name, amount)
        self.state["done"].setdefault(source, []).append(unit)
        write_json_atomic(self.state_path, self.state)

    def save_state(self) -> None:
        write_json_atomic(self.state_path, self.state)

    def rows(self) -> list[dict[str, Any]]:
        with self.path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    def report(self) -> dict[str, Any]:
        """Rows per source and category, the NONE share, and every counter the builders kept."""
        per_category: dict[str, Counter] = defaultdict(Counter)
        none_rows = 0
        rows = self.rows()
        for row in rows:
            per_category[row.get("category") or "(free question)"][row["source"]] += 1
            none_rows += not row["quotes"]
        return {
            "file": str(self.path),
            "rows": len(rows),
            "rows_per_source": dict(sorted(Counter(row["source"] for row in rows).items())),
            "none_share": round(none_rows / len(rows), 4) if rows else None,
            "contracts": len({row["contract_id"] for row in rows}),
            "rows_per_category": {c: dict(sorted(n.items())) for c, n in sorted(per_category.items())},
            "counts": self.state["counts"],
            "units_done": {source: len(units) for source, units in self.state["done"].items()},
        }


RowsOf = Callable[[str], "tuple[list[dict[str, Any]], dict[str, int]]"]


def build_per_contract(
    dataset: SFTDataset, source: str, contract_ids: Iterable[str], rows_of: RowsOf,
    on_contract: Callable[[str], None] | None = None,
) -> int:
    """Add ``rows_of(contract_id)`` (rows and counters) for every contract whose unit is not done yet; returns
    rows written. A contract's rows are appended and its unit marked done together, so an interrupted build
    redoes at most the contract in flight. ``on_contract`` is called after each contract, done or skipped."""
    written = 0
    for contract_id in sorted(contract_ids):
        if not dataset.is_done(source, contract_id):
            rows, counts = rows_of(contract_id)
            written += dataset.append(rows)
            dataset.mark_done(source, contract_id, counts)
            logger.debug("%s rows of %s: %s", source, contract_id, counts)
        if on_contract:
            on_contract(contract_id)
    logger.info("%s rows: %d written", source, written)
    return written
