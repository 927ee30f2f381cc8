"""`clauseloop run`: the main job on the embedded offline default."""

from __future__ import annotations

from typing import Optional

import typer
from rich.panel import Panel

from clauseloop.cli.common import DATA_HELP, console, err_console, print_json


def run(
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    student: str = typer.Option("smollm2-135m-instruct", help="Student model: name, local dir (+adapter), hub id."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Run the main job: load contracts, prepare local models, report statistics, ask the student."""
    from clauseloop.loop import RunConfig, run_main_job

    with err_console.status("running the main job (first run converts the local model, ~40 s)"):
        report = run_main_job(RunConfig(data=data, student=student))
    if as_json:
        print_json(report)
        return
    stats = report["stats"]
    console.print(
        f"[bold]data[/] {stats['source']}: {stats['contracts']} contracts, {stats['questions']} questions, "
        f"{stats['answerable']} answerable ({stats['answerable_share']:.0%}), {stats['categories']} categories"
    )
    for name, model in report["models"].items():
        console.print(f"[bold]model[/] {name}: {'converted' if model['created'] else 'cached'} at {model['path']}")
    example = report["example"]
    console.print(Panel(example["answer"], title=f"student on {example['contract']}", expand=False))
    console.print(f"done in {report['seconds']}s")
