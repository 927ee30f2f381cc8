"""`clauseloop run`: the main job on the embedded offline default."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from clauseloop.cli.common import DATA_HELP, console, err_console, print_json, user_errors
from clauseloop.cli.loop import print_decision
from clauseloop.cli.quiet import library_stdout


def run(
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    student: str = typer.Option("student", help="The answering LM: a role or a model string."),
    contract: Optional[str] = typer.Option(None, help="Id of the contract to review (default: the first)."),
    limit: Optional[int] = typer.Option(123, min=1, help="Questions per evaluation, stratified by category."),
    out: str = typer.Option("runs/main", help="Directory for the reports, the loop and its registry."),
    loop: bool = typer.Option(True, "--loop/--no-loop", help="Run the loop before and after new contracts arrive."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Run the main job: review one contract, evaluate the program and a baseline, then run the loop as contracts
    arrive (incremental tuning of the student, the promotion gate)."""
    from clauseloop.cli.loop import show_stage
    from clauseloop.loop import RunConfig, run_main_job

    config = RunConfig(data=data, student=student, contract=contract, eval_limit=limit, out_dir=out,
                       progress=not as_json, loop=loop)
    with user_errors(), library_stdout(), err_console.status(
            "running the main job (a first run converts the local model, ~40 s)"):
        report = run_main_job(config, on_stage=show_stage)
    if as_json:
        print_json(report)
        return
    print_summary(report)


def print_summary(report: dict) -> None:
    stats, review = report["stats"], report["review"]
    console.print(
        f"[bold]data[/] {stats['source']}: {stats['contracts']} contracts, {stats['questions']} questions, "
        f"{stats['answerable']} answerable ({stats['answerable_share']:.0%}), {stats['categories']} categories"
    )
    console.print(
        f"[bold]review[/] {review['contract']} ({review['chars']:,} characters): {len(review['spans'])} categories "
        f"with clauses in {review['seconds']} s; {len(review['gated'])} answered 'no clause' by the presence gate "
        f"without the LM; {review['dropped_spans']} unlocatable quotes dropped"
    )
    for category, spans in sorted(review["spans"].items()):
        first = " ".join(spans[0]["text"].split())
        console.print(f"  [cyan]{category}[/]: {first[:110]}{'…' if len(first) > 110 else ''}")
    table = Table("program", "questions", "AUPR", "P@80R", "F1", "no-answer acc.", "q/s", title="evaluation")
    for name, row in report["evaluation"].items():
        cells = [f"{row[k]:.3f}" if row[k] is not None else "–"
                 for k in ("aupr", "prec_at_80_recall", "f1", "no_answer_accuracy")]
        table.add_row(name, str(row["questions"]), *cells, str(row["questions_per_second"]))
    console.print(table)
    console.print(f"reports: {', '.join(row['report'] for row in report['evaluation'].values())}")
    for number, loop_report in enumerate(report.get("loop", []), start=1):
        arrived = f"{len(loop_report['new_contracts'])} new training contract(s)"
        console.print(f"[bold]loop run {number}[/] on {loop_report['config']['data']}: {arrived}", highlight=False,
                      soft_wrap=True)
        print_decision(loop_report)
    console.print(f"done in {report['seconds']} s")
