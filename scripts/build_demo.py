"""Build the packaged demo contracts, ``clauseloop/data/demo/demo_cuad.json``, from annotated sources.

Sources are ``scripts/demo_sources/*.txt``, read in file-name order, one contract per file::

    TITLE: ACMEROBOTICS_03_14_2019-EX-10.1-DISTRIBUTOR AGREEMENT
    ---
    <contract text with inline markup>

Markup: ``[[Category A|Category B: verbatim clause text]]`` marks one answer span for each category named.

* Category names are the official CUAD names from ``clauseloop/data/categories.py``; an unknown name is an error.
* ``|`` gives one span several categories (a date that is both Agreement Date and Effective Date).
* Markers nest: ``[[Expiration Date: ... commence on [[Effective Date: March 1, 2019]] and end on ...]]``.
* The markers are removed and the offsets are computed on the cleaned text, never typed by hand. A category marked
  several times gets several answers (in text order); every category never marked is unanswerable.
* Outside markers the text may not contain ``[[`` or ``]]``.

The output follows CUADv1.json (SQuAD 2.0): one paragraph per contract, 41 questions per contract in catalogue
order, ids ``<title>__<category>``. It is deterministic, so a rebuild of unchanged sources changes nothing.

Usage: ``python3 scripts/build_demo.py`` (write the JSON) or ``python3 scripts/build_demo.py --check`` (exit 1 if
the JSON on disk is stale or a source is invalid).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "scripts" / "demo_sources"
OUTPUT = ROOT / "clauseloop" / "data" / "demo" / "demo_cuad.json"
VERSION = "clauseloop-demo-1.0"
MIN_CHARS, MAX_CHARS = 2_500, 6_000

_TOKEN = re.compile(r"\[\[|\]\]")
_HEADER = re.compile(r"([^\[\]:\n]+): ")
_TITLE = re.compile(r"^[A-Z0-9]+_\d{2}_\d{2}_\d{4}-EX-[0-9.]+-[A-Z0-9 ,&/-]+$")


class SourceError(ValueError):
    """An annotated source that cannot be turned into a valid CUAD record."""


def load_categories_module() -> ModuleType:
    """``clauseloop/data/categories.py`` loaded from its file, so no package ``__init__`` (or install) is needed."""
    path = ROOT / "clauseloop" / "data" / "categories.py"
    spec = importlib.util.spec_from_file_location("_clauseloop_demo_categories", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def read_source(path: Path) -> tuple[str, str]:
    """The title and the annotated contract text of one source file."""
    head, sep, body = path.read_text(encoding="utf-8").partition("\n---\n")
    if not sep or not head.startswith("TITLE: "):
        raise SourceError(f"{path.name}: expected a 'TITLE: ...' line, then a '---' line, then the contract")
    title = head[len("TITLE: ") :].strip()
    if not _TITLE.match(title):
        raise SourceError(f"{path.name}: title {title!r} does not look like a CUAD title (NAME_MM_DD_YYYY-EX-N-TYPE)")
    return title, body.strip("\n")


def strip_markup(raw: str, where: str, known: set[str]) -> tuple[str, list[tuple[str, int, int]]]:
    """The contract text without markers, and (category, start, end) for every marked span."""
    pieces: list[str] = []
    marks: list[tuple[str, int, int]] = []
    open_marks: list[tuple[list[str], int, int]] = []
    size = pos = 0
    for token in _TOKEN.finditer(raw):
        pieces.append(raw[pos : token.start()])
        size += token.start() - pos
        line = raw.count("\n", 0, token.start()) + 3  # + the TITLE and --- lines
        if token.group() == "[[":
            header = _HEADER.match(raw, token.end())
            if header is None:
                raise SourceError(f"{where}:{line}: '[[' must be followed by 'Category[|Category...]: '")
            names = [name.strip() for name in header.group(1).split("|")]
            unknown = [name for name in names if name not in known]
            if unknown:
                raise SourceError(f"{where}:{line}: unknown CUAD categor{'y' if len(unknown) == 1 else 'ies'} {unknown}")
            open_marks.append((names, size, line))
            pos = header.end()
        else:
            if not open_marks:
                raise SourceError(f"{where}:{line}: ']]' without a matching '[['")
            names, start, _ = open_marks.pop()
            marks.extend((name, start, size) for name in names)
            pos = token.end()
    pieces.append(raw[pos:])
    if open_marks:
        raise SourceError(f"{where}:{open_marks[-1][2]}: '[[' is never closed")
    return "".join(pieces), marks


def answers_by_category(text: str, marks: list[tuple[str, int, int]], where: str) -> dict[str, list[dict]]:
    """Marked spans grouped by category, each as a SQuAD answer, in text order; checks every span."""
    grouped: dict[str, list[dict]] = {}
    for name, start, end in sorted(marks, key=lambda mark: (mark[1], mark[2], mark[0])):
        span = text[start:end]
        if not span or span != span.strip():
            raise SourceError(f"{where}: {name} span {span!r} is empty or has leading/trailing whitespace")
        answers = grouped.setdefault(name, [])
        if any(answer["answer_start"] == start and answer["text"] == span for answer in answers):
            raise SourceError(f"{where}: {name} marks the span at {start} twice")
        answers.append({"text": span, "answer_start": start})
    return grouped


def build_contract(path: Path, categories: ModuleType) -> dict:
    """One CUAD ``data`` entry: the contract text and its 41 questions."""
    title, raw = read_source(path)
    known = {category.name for category in categories.BUILTIN_CATEGORIES}
    text, marks = strip_markup(raw, path.name, known)
    if not MIN_CHARS <= len(text) <= MAX_CHARS:
        raise SourceError(f"{path.name}: contract is {len(text)} characters; keep it within {MIN_CHARS}-{MAX_CHARS}")
    grouped = answers_by_category(text, marks, path.name)
    qas = []
    for category in categories.BUILTIN_CATEGORIES:
        answers = grouped.get(category.name, [])
        qas.append(
            {
                "id": f"{title}__{category.name}",
                "question": categories.question_for(category),
                "answers": answers,
                "is_impossible": not answers,
            }
        )
    return {"title": title, "paragraphs": [{"context": text, "qas": qas}]}


def build_document(source_dir: Path = SOURCE_DIR) -> dict:
    """The whole demo file as a JSON-ready object; titles must be unique."""
    categories = load_categories_module()
    sources = sorted(source_dir.glob("*.txt"))
    if not sources:
        raise SourceError(f"{source_dir}: no *.txt contract sources")
    data = [build_contract(path, categories) for path in sources]
    titles = [entry["title"] for entry in data]
    duplicates = sorted({title for title in titles if titles.count(title) > 1})
    if duplicates:
        raise SourceError(f"duplicate contract titles: {duplicates}")
    return {"version": VERSION, "data": data}


def render(document: dict) -> str:
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


def summary(document: dict) -> str:
    """A one-line account of what was built."""
    qas = [qa for entry in document["data"] for qa in entry["paragraphs"][0]["qas"]]
    answerable = [qa for qa in qas if qa["answers"]]
    covered = {qa["id"].rpartition("__")[2] for qa in answerable}
    chars = sum(len(entry["paragraphs"][0]["context"]) for entry in document["data"])
    return (
        f"{len(document['data'])} contracts, {chars} characters, {len(qas)} questions, "
        f"{len(answerable)} answerable ({len(answerable) / len(qas):.1%}), {len(covered)} categories with answers"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the JSON on disk is stale")
    args = parser.parse_args(argv)
    try:
        document = build_document()
    except SourceError as error:
        print(f"build_demo: {error}", file=sys.stderr)
        return 2
    content = render(document)
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else None
        if current != content:
            print(f"build_demo: {OUTPUT.relative_to(ROOT)} is stale; run python3 scripts/build_demo.py", file=sys.stderr)
            return 1
        print(f"{OUTPUT.relative_to(ROOT)} is up to date: {summary(document)}")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(content, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {summary(document)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
