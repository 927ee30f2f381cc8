"""`clauseloop finetune ...`: build the SFT dataset (gold labels, teacher traces, self-instruct)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from clauseloop.cli.common import DATA_HELP, console, err_console, fail, print_json, user_errors
from clauseloop.engine.config import default_of, help_of
from clauseloop.finetune.build import DataConfig
from clauseloop.finetune.gold import GoldRowsConfig
from clauseloop.finetune.selfinstruct_config import SelfInstructConfig
from clauseloop.finetune.sft import SFTRunConfig
from clauseloop.finetune.traces import TraceConfig

app = typer.Typer(help="Training data and fine-tuning of the local student.", no_args_is_help=True)


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TextColumn("contracts"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
    )


def _run_build(config: DataConfig, show_progress: bool) -> dict:
    from clauseloop.finetune.build import build_dataset
    from clauseloop.engine.reachability import RoleUnavailable

    try:
        with user_errors():
            if not show_progress:
                return build_dataset(config)
            with _progress_bar() as bar:
                tasks: dict[str, int] = {}

                def advance(source: str, contract_id: str, total: int) -> None:
                    if source not in tasks:
                        tasks[source] = bar.add_task(source, total=total)
                    bar.advance(tasks[source])

                return build_dataset(config, progress=advance)
    except RoleUnavailable as error:
        fail(str(error))


@app.command("data")
def data_command(
    out: str = typer.Option(..., "--out", help=help_of(DataConfig, "out")),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    split: str = typer.Option(default_of(DataConfig, "split"), help=help_of(DataConfig, "split")),
    limit_contracts: Optional[int] = typer.Option(None, min=1, help=help_of(DataConfig, "limit_contracts")),
    sources: str = typer.Option(",".join(default_of(DataConfig, "sources")), help=help_of(DataConfig, "sources")),
    teacher: str = typer.Option(default_of(DataConfig, "teacher"), help=help_of(DataConfig, "teacher")),
    judge: Optional[str] = typer.Option(None, help=help_of(DataConfig, "judge")),
    judge_threshold: Optional[float] = typer.Option(None, help=help_of(SelfInstructConfig, "judge_threshold")),
    program: str = typer.Option(default_of(DataConfig, "program"), help=help_of(DataConfig, "program")),
    none_share: float = typer.Option(default_of(GoldRowsConfig, "none_share"), help=help_of(GoldRowsConfig, "none_share")),
    min_score: float = typer.Option(default_of(TraceConfig, "min_score"), help=help_of(TraceConfig, "min_score")),
    trace_questions: int = typer.Option(
        default_of(TraceConfig, "questions_per_contract"), min=1, help=help_of(TraceConfig, "questions_per_contract")
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON."),
) -> None:
    """Build (or continue) the SFT dataset: one JSON line per row, resumable, train contracts only."""
    with user_errors():
        config = DataConfig(
            out=out, data=data, split=split, limit_contracts=limit_contracts,
            sources=tuple(s.strip() for s in sources.split(",") if s.strip()), teacher=teacher, judge=judge,
            program=program, gold=GoldRowsConfig(none_share=none_share),
            traces=TraceConfig(min_score=min_score, questions_per_contract=trace_questions),
            synthetic=SelfInstructConfig(judge_threshold=judge_threshold),
        )
    report = _run_build(config, show_progress=not as_json)
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _print_report(report: dict) -> None:
    table = Table("source", "rows", "counts")
    for source, counts in sorted(report["counts"].items()):
        shown = ", ".join(f"{name} {value}" for name, value in counts.items())
        table.add_row(source, str(report["rows_per_source"].get(source, 0)), shown)
    console.print(table)
    console.print(
        f"{report['rows']} rows from {report['contracts']} contracts, NONE share {report['none_share']}; "
        f"{report['file']} (report: {report['file']}.report.json)", highlight=False, soft_wrap=True,
    )


@app.command("sft")
def sft_command(
    data: str = typer.Option(..., "--data", help=help_of(SFTRunConfig, "data")),
    out: str = typer.Option(..., "--out", help=help_of(SFTRunConfig, "out")),
    from_adapter: Optional[str] = typer.Option(None, "--from", help=help_of(SFTRunConfig, "from_adapter")),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help=help_of(SFTRunConfig, "max_steps")),
    epochs: float = typer.Option(default_of(SFTRunConfig, "epochs"), "--epochs", help=help_of(SFTRunConfig, "epochs")),
    lr: float = typer.Option(
        default_of(SFTRunConfig, "learning_rate"), "--lr", help=help_of(SFTRunConfig, "learning_rate")
    ),
    resume: bool = typer.Option(False, "--resume", help=help_of(SFTRunConfig, "resume")),
    as_json: bool = typer.Option(False, "--json", help="Print the adapter manifest JSON."),
) -> None:
    """Train a LoRA adapter for the local student on an SFT dataset (CPU; checkpointed, resumable)."""
    import contextlib
    import sys

    from clauseloop.finetune.sft import train_sft

    with user_errors():
        config = SFTRunConfig(data=data, out=out, from_adapter=from_adapter, max_steps=max_steps, epochs=epochs,
                              learning_rate=lr, resume=resume)
        # the trainer prints its per-step log lines to stdout: keep stdout for the result (and --json clean)
        with contextlib.redirect_stdout(sys.stderr):
            result = train_sft(config)
    if as_json:
        print_json(result.manifest)
        return
    metrics = result.metrics
    console.print(f"adapter: {result.adapter_dir}", highlight=False, soft_wrap=True)
    console.print(
        f"{metrics['steps']} steps, train loss {metrics['train_loss']}, {metrics['tokens']} tokens, "
        f"{metrics['tokens_per_second']} tokens/s, {metrics['seconds']} s", highlight=False,
    )
