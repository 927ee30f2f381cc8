"""`clauseloop feedback import|export|stats`: the human feedback store the server writes and alignment reads."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from clauseloop.cli.common import console, fail, print_json
from clauseloop.engine.config import default_of
from clauseloop.serve.config import ServeConfig

app = typer.Typer(help="The feedback store (SQLite): import, export, stats.", no_args_is_help=True)
DB_HELP = "The SQLite file (the one `clauseloop serve --db` writes)."


def _open(db: Path, must_exist: bool = True):
    from clauseloop.feedback import FeedbackError, FeedbackStore

    if must_exist and not db.is_file():
        fail(f"no feedback database at {db}; give --db (the file `clauseloop serve --db` writes)")
    try:
        return FeedbackStore(db)
    except (FeedbackError, OSError) as error:
        fail(f"cannot open {db}: {error}")


@app.command("import")
def import_(
    file: Path = typer.Argument(..., help="A JSON-lines file of feedback records (from `feedback export`)."),
    db: Path = typer.Option(Path(default_of(ServeConfig, "db")), help=DB_HELP),
) -> None:
    """Add the records of FILE; exact duplicates are skipped and counted, a bad line imports nothing."""
    from clauseloop.feedback import FeedbackError

    with _open(db, must_exist=False) as store:
        try:
            result = store.import_jsonl(file)
        except (FeedbackError, FileNotFoundError, UnicodeDecodeError) as error:
            fail(str(error))
    console.print(f"{result.added} added, {result.duplicates} duplicates skipped; {db}", highlight=False)


@app.command("export")
def export(
    file: Path = typer.Argument(..., help="Where to write the JSON-lines file (atomically)."),
    db: Path = typer.Option(Path(default_of(ServeConfig, "db")), help=DB_HELP),
) -> None:
    """Write every record to FILE, one JSON object a line."""
    with _open(db) as store:
        count = store.export_jsonl(file)
    console.print(f"{count} records written to {file}", highlight=False)


@app.command("stats")
def stats(
    db: Path = typer.Option(Path(default_of(ServeConfig, "db")), help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the stats as JSON."),
) -> None:
    """Counts by vote, category and model version, and the share of thumbs-down."""
    with _open(db) as store:
        summary = store.stats()
    if as_json:
        print_json(summary)
        return
    rate = summary["negative_rate"]
    console.print(f"{summary['total']} records: {summary['by_vote']['up']} up, {summary['by_vote']['down']} down"
                  f" (negative rate {'–' if rate is None else f'{rate:.1%}'}), {summary['corrected']} with a "
                  f"correction, {summary['flagged']} flagged", highlight=False)
    for title, key in (("category", "by_category"), ("model version", "by_model_version")):
        if summary[key]:
            table = Table(title, "records")
            for name, count in summary[key].items():
                table.add_row(name, str(count))
            console.print(table)
