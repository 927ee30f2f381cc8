"""`clauseloop data ...`: dataset statistics and the contract split."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from clauseloop.cli.common import DATA_HELP, console, load_data_or_fail, print_json

app = typer.Typer(help="Inspect CUAD data: statistics and the train/dev/test split.", no_args_is_help=True)


@app.command()
def stats(
    path: Optional[str] = typer.Argument(None, help=DATA_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    lenient: bool = typer.Option(False, help="Skip (and report) bad records instead of failing."),
) -> None:
    """Contracts, questions, answerable share, per-category counts and contract lengths."""
    from clauseloop.data.stats import dataset_stats

    report = dataset_stats(load_data_or_fail(path, lenient))
    if as_json:
        print_json(report)
        return
    chars = report["contract_chars"]
    console.print(
        f"[bold]{report['source']}[/]  fingerprint {report['fingerprint']}\n"
        f"contracts {report['contracts']}  questions {report['questions']}  answerable {report['answerable']} "
        f"({report['answerable_share']:.1%})  spans {report['answer_spans']}  categories {report['categories']}\n"
        f"contract characters: min {chars['min']:,}  median {chars['median']:,}  mean {chars['mean']:,}  "
        f"p90 {chars['p90']:,}  max {chars['max']:,}"
    )
    table = Table("category", "questions", "answerable", "spans")
    for name, row in report["per_category"].items():
        table.add_row(name, str(row["questions"]), str(row["answerable"]), str(row["spans"]))
    console.print(table)


@app.command()
def split(
    path: Optional[str] = typer.Argument(None, help=DATA_HELP),
    train: float = typer.Option(0.8, help="Share of contracts in train."),
    dev: float = typer.Option(0.1, help="Share of contracts in dev."),
    test: float = typer.Option(0.1, help="Share of contracts in test."),
    salt: str = typer.Option("", help="Change to draw a different (still deterministic) split."),
    as_json: bool = typer.Option(False, "--json", help="Print the split (titles per split) as JSON."),
) -> None:
    """The deterministic split by contract (a hash of the title)."""
    from clauseloop.cli.common import fail
    from clauseloop.data.split import SplitConfig, split_dataset

    try:
        config = SplitConfig(train=train, dev=dev, test=test, salt=salt)
    except ValueError as error:
        fail(str(error))
    parts = split_dataset(load_data_or_fail(path), config)
    if as_json:
        print_json({name: sorted(c.title for c in part.contracts.values()) for name, part in parts.items()})
        return
    table = Table("split", "contracts", "questions", "answerable")
    for name, part in parts.items():
        answerable = sum(q.answerable for q in part.questions)
        table.add_row(name, str(len(part.contracts)), str(len(part.questions)), str(answerable))
    console.print(table)
