"""Load CUAD in any of its official layouts, validating every record.

Layouts accepted by :func:`load_cuad`:

* ``CUADv1.json`` / ``test.json`` — SQuAD 2.0: ``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``;
* ``train_separate_questions.json`` — the same, but a question with several answers is split into
  ``<id>_0``, ``<id>_1``, … with one answer each; they are merged back into one question;
* any of those gzipped (``.gz``);
* the hub dataset (``hub:theatticusproject/cuad-qa``) or a local file/directory in its flat schema
  (one row per question: ``id, title, context, question, answers{text, answer_start}``), read through ``datasets``.

Nothing is dropped silently: a bad record raises :class:`CuadFormatError` naming the file, contract and question, or,
with ``lenient=True``, is skipped and reported in ``dataset.skipped`` and the log.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from clauseloop.data.categories import BUILTIN_CATEGORIES, Category, canonical_name, category_from_question
from clauseloop.data.records import ClauseQuestion, Contract, CuadDataset, Span

logger = logging.getLogger(__name__)

DEMO_NAME = "demo"
HUB_PREFIX = "hub:"
DEFAULT_HUB_DATASET = "theatticusproject/cuad-qa"
_SPLIT_SUFFIX = re.compile(r"^(?P<base>.+__.+)_(?P<part>\d+)$")
_DETAILS = re.compile(r"Details:\s*(?P<details>.*)$", re.S)


class CuadFormatError(ValueError):
    """A CUAD file that does not follow the official layout; the message names the culprit and the fix."""


class _Problems:
    """Raise on the first problem, or (lenient) record each one and carry on."""

    def __init__(self, source: str, lenient: bool):
        self.source, self.lenient, self.skipped = source, lenient, []

    def report(self, where: str, message: str) -> None:
        text = f"{self.source}: {where}: {message}"
        if not self.lenient:
            raise CuadFormatError(text + " (fix the record, or load with lenient=True / --lenient to skip it)")
        logger.warning("skipping %s", text)
        self.skipped.append(text)


def demo_path() -> Path:
    """The demo contracts shipped inside the package (CUADv1.json layout)."""
    return Path(str(resources.files("clauseloop.data") / "demo" / "demo_cuad.json"))


def load_cuad(
    path: str | Path | None = None, *, lenient: bool = False, categories: Iterable[Category] | None = None
) -> CuadDataset:
    """Load contracts and questions from ``path`` (``None`` or ``"demo"``: the packaged demo contracts)."""
    if path is None or str(path) == DEMO_NAME:
        path = demo_path()
    text = str(path)
    if text.startswith(HUB_PREFIX):
        name, _, split = text[len(HUB_PREFIX) :].partition(":")
        return load_hub(name or DEFAULT_HUB_DATASET, split=split or "train", lenient=lenient, categories=categories)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file. Give a CUADv1.json / test.json / train_separate_questions.json (optionally .gz), "
            f"'{HUB_PREFIX}{DEFAULT_HUB_DATASET}', or leave PATH out for the demo contracts."
        )
    if path.is_dir() or path.suffix in {".parquet", ".jsonl", ".arrow"}:
        return load_hub(str(path), lenient=lenient, categories=categories)
    doc = _read_json(path)
    if isinstance(doc, list):  # a JSON array of hub-schema rows
        return parse_hub_rows(doc, str(path), lenient=lenient, categories=categories)
    return parse_squad(doc, str(path), lenient=lenient, categories=categories)


def _read_json(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise CuadFormatError(
            f"{path}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); "
            "expected the SQuAD 2.0 layout of CUADv1.json"
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise CuadFormatError(f"{path}: cannot read it as (gzipped) UTF-8 JSON: {error}") from error


def parse_squad(
    doc: Any, source: str, *, lenient: bool = False, categories: Iterable[Category] | None = None
) -> CuadDataset:
    """Turn a parsed SQuAD-2.0 CUAD document into a validated :class:`CuadDataset`."""
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise CuadFormatError(f"{source}: expected a JSON object with a 'data' list (the CUADv1.json layout)")
    problems = _Problems(source, lenient)
    builder = _DatasetBuilder(problems, categories)
    for index, entry in enumerate(doc["data"]):
        where = f"data[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
            problems.report(where, "missing field 'title' (a string)")
            continue
        paragraphs = entry.get("paragraphs")
        if not isinstance(paragraphs, list) or not paragraphs:
            problems.report(f"contract {entry['title']!r}", "missing field 'paragraphs' (a non-empty list)")
            continue
        for p_index, paragraph in enumerate(paragraphs):
            contract_id = entry["title"] if len(paragraphs) == 1 else f"{entry['title']}#{p_index}"
            builder.add_paragraph(contract_id, entry["title"], paragraph)
    return builder.build(source)


def parse_hub_rows(
    rows: Iterable[dict], source: str, *, lenient: bool = False, categories: Iterable[Category] | None = None
) -> CuadDataset:
    """Turn flat hub-schema rows (one per question, context repeated) into a :class:`CuadDataset`."""
    problems = _Problems(source, lenient)
    by_title: dict[str, dict] = {}
    for index, row in enumerate(rows):
        missing = [key for key in ("id", "title", "context", "question") if not isinstance(row.get(key), str)]
        if missing:
            problems.report(f"row {index} (id {row.get('id')!r})", f"missing field(s) {', '.join(missing)}")
            continue
        paragraph = by_title.setdefault(row["title"], {"context": row["context"], "qas": []})
        if paragraph["context"] != row["context"]:
            problems.report(f"question {row['id']!r}", f"context differs from earlier rows of {row['title']!r}")
            continue
        answers = row.get("answers") or {"text": [], "answer_start": []}
        pairs = zip(answers.get("text", []), answers.get("answer_start", []))
        paragraph["qas"].append(
            {
                "id": row["id"],
                "question": row["question"],
                "answers": [{"text": text, "answer_start": start} for text, start in pairs],
                "is_impossible": row.get("is_impossible", not answers.get("text")),
            }
        )
    builder = _DatasetBuilder(problems, categories)
    for title, paragraph in by_title.items():
        builder.add_paragraph(title, title, paragraph)
    return builder.build(source)


def load_hub(
    name_or_path: str = DEFAULT_HUB_DATASET,
    *,
    split: str = "train",
    lenient: bool = False,
    categories: Iterable[Category] | None = None,
) -> CuadDataset:
    """Load the hub dataset (or a local file/directory in its schema) through ``datasets``."""
    import datasets  # heavy: only for this path

    path = Path(name_or_path)
    if path.is_dir() and (path / "dataset_info.json").exists():
        table = datasets.load_from_disk(str(path))
        table = table[split] if isinstance(table, datasets.DatasetDict) else table
    elif path.is_file():
        kind = {".parquet": "parquet", ".arrow": "arrow"}.get(path.suffix, "json")
        table = datasets.load_dataset(kind, data_files=str(path), split="train")
    else:
        try:
            table = datasets.load_dataset(name_or_path, split=split)
        except Exception as error:  # network, auth, unknown name: all end the same way for the user
            raise CuadFormatError(
                f"cannot load hub dataset {name_or_path!r} (split {split!r}): {error}. Without network access, "
                "download CUADv1.json once and pass its path instead."
            ) from error
    return parse_hub_rows(table, f"{name_or_path}[{split}]", lenient=lenient, categories=categories)


class _DatasetBuilder:
    """Validates paragraphs one by one, merges split questions, and checks ids are unique."""

    def __init__(self, problems: _Problems, categories: Iterable[Category] | None):
        self.problems = problems
        self.categories = tuple(categories or BUILTIN_CATEGORIES)
        self.descriptions = {c.name: c.description for c in self.categories}
        self.contracts: dict[str, Contract] = {}
        self.questions: dict[str, ClauseQuestion] = {}
        self.raw_ids: set[str] = set()

    def add_paragraph(self, contract_id: str, title: str, paragraph: Any) -> None:
        if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
            self.problems.report(f"contract {contract_id!r}", "missing field 'context' (the contract text)")
            return
        if contract_id in self.contracts:
            self.problems.report(f"contract {contract_id!r}", "duplicate contract title")
            return
        qas = paragraph.get("qas")
        if not isinstance(qas, list):
            self.problems.report(f"contract {contract_id!r}", "missing field 'qas' (a list of questions)")
            return
        contract = Contract(id=contract_id, title=title, text=paragraph["context"])
        self.contracts[contract_id] = contract
        for qa in qas:
            self._add_question(contract, qa)

    def _add_question(self, contract: Contract, qa: Any) -> None:
        where = f"contract {contract.id!r}, question {qa.get('id') if isinstance(qa, dict) else None!r}"
        if not isinstance(qa, dict) or not isinstance(qa.get("id"), str) or not isinstance(qa.get("question"), str):
            self.problems.report(where, "missing field 'id' or 'question'")
            return
        if qa["id"] in self.raw_ids:
            self.problems.report(where, "duplicate question id")
            return
        self.raw_ids.add(qa["id"])
        spans = self._spans(contract, qa, where)
        if spans is None:
            return
        split = _SPLIT_SUFFIX.match(qa["id"])
        qid = split.group("base") if split else qa["id"]
        if qid in self.questions and split:  # train_separate_questions.json: merge the parts back
            earlier = self.questions[qid]
            self.questions[qid] = ClauseQuestion(
                **{**earlier.__dict__, "answers": earlier.answers + spans, "is_impossible": False}
            )
            return
        if qid in self.questions:
            self.problems.report(where, "duplicate question id")
            return
        self.questions[qid] = self._question(contract, qid, qa, spans)

    def _spans(self, contract: Contract, qa: dict, where: str) -> tuple[Span, ...] | None:
        answers = qa.get("answers", [])
        if not isinstance(answers, list):
            self.problems.report(where, "'answers' must be a list")
            return None
        spans = []
        for number, answer in enumerate(answers):
            text, start = (answer.get("text"), answer.get("answer_start")) if isinstance(answer, dict) else (None, None)
            if not isinstance(text, str) or not isinstance(start, int) or isinstance(start, bool):
                self.problems.report(where, f"answer {number} needs 'text' (string) and 'answer_start' (integer)")
                return None
            if contract.text[start : start + len(text)] != text or start < 0:
                found = contract.text.find(text)
                hint = f"; the text occurs at {found}" if found >= 0 else "; the text does not occur in the contract"
                self.problems.report(where, f"answer {number} answer_start={start} does not index its text{hint}")
                return None
            spans.append(Span(text=text, start=start))
        return tuple(spans)

    def _question(self, contract: Contract, qid: str, qa: dict, spans: tuple[Span, ...]) -> ClauseQuestion:
        raw_category = category_from_question(qa["question"]) or qid.rpartition("__")[2]
        category = canonical_name(raw_category, self.categories)
        details = _DETAILS.search(qa["question"])
        description = self.descriptions.get(category) or (details.group("details").strip() if details else "")
        return ClauseQuestion(
            id=qid,
            contract_id=contract.id,
            category=category,
            question=qa["question"],
            description=description,
            answers=spans,
            is_impossible=not spans,
        )

    def build(self, source: str) -> CuadDataset:
        if not self.contracts and not self.problems.skipped:
            raise CuadFormatError(f"{source}: no contracts found; expected at least one entry under 'data'")
        return CuadDataset(
            contracts=self.contracts,
            questions=list(self.questions.values()),
            source=source,
            skipped=self.problems.skipped,
        )
