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
from clauseloop.finetune.retention import RetentionConfig
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
    replay: float = typer.Option(default_of(SFTRunConfig, "replay"), "--replay", help=help_of(SFTRunConfig, "replay")),
    device: str = typer.Option(default_of(SFTRunConfig, "device"), "--device", help=help_of(SFTRunConfig, "device")),
    as_json: bool = typer.Option(False, "--json", help="Print the adapter manifest JSON."),
) -> None:
    """Train a LoRA adapter for the local student on an SFT dataset (checkpointed, resumable; on GPUs with
    `accelerate launch $(which clauseloop) finetune sft ...`)."""
    import contextlib
    import sys

    from clauseloop.finetune.sft import train_sft

    with user_errors():
        config = SFTRunConfig(data=data, out=out, from_adapter=from_adapter, max_steps=max_steps, epochs=epochs,
                              learning_rate=lr, resume=resume, replay=replay, device=device)
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


@app.command("ship")
def ship_command(
    adapter: str = typer.Argument(..., help="An SFT run's OUT/adapter directory."),
    to: Optional[str] = typer.Option(None, "--to", help="Target directory (default: the package's student)."),
) -> None:
    """Make an adapter the package's student (`clauseloop-student`, the student role's default), in float16."""
    from clauseloop.finetune.ship import ship_adapter
    from clauseloop.models.store import SHIPPED_STUDENT_DIR

    with user_errors():
        manifest = ship_adapter(adapter, to or SHIPPED_STUDENT_DIR)
    shipped = manifest["shipped"]
    console.print(f"shipped {adapter} → {to or SHIPPED_STUDENT_DIR} ({shipped['bytes'] / 2**20:.1f} MiB float16)",
                  highlight=False, soft_wrap=True)


@app.command("retention")
def retention_command(
    model: str = typer.Argument(..., help="The tuned model: BASE+ADAPTER_DIR (e.g. smollm2-135m-instruct+runs/x/"
                                          "adapter), a model directory or a store name."),
    base: str = typer.Option(default_of(RetentionConfig, "base_model"), "--base",
                             help=help_of(RetentionConfig, "base_model")),
    limit: Optional[int] = typer.Option(None, "--limit", min=2, help=help_of(RetentionConfig, "limit")),
    max_tokens: int = typer.Option(default_of(RetentionConfig, "max_tokens"), "--max-tokens", min=1,
                                   help=help_of(RetentionConfig, "max_tokens")),
    threads: int = typer.Option(default_of(RetentionConfig, "threads"), "--threads", min=1,
                                help=help_of(RetentionConfig, "threads")),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON."),
) -> None:
    """Forgetting check: accuracy on general checkable prompts and KL(base || tuned) on open ones."""
    from clauseloop.finetune.retention import measure_retention
    from clauseloop.models import ModelNotAvailable

    with user_errors():
        config = RetentionConfig(base_model=base, limit=limit, max_tokens=max_tokens, threads=threads)
        try:
            if as_json:
                report = measure_retention(model, config)
            else:
                with _retention_bar() as bar:
                    tasks: dict[str, int] = {}

                    def advance(phase: str, done: int, total: int) -> None:
                        if phase not in tasks:
                            tasks[phase] = bar.add_task(phase, total=total)
                        bar.update(tasks[phase], completed=done)

                    report = measure_retention(model, config, progress=advance)
        except ModelNotAvailable as error:
            fail(str(error))
    if as_json:
        print_json(report.to_dict())
        return
    _print_retention(report)


def _retention_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:>16}"), BarColumn(), MofNCompleteColumn(), TextColumn("prompts"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=False,
    )


def _print_retention(report) -> None:
    table = Table("kind", "n", "base acc", "tuned acc", "drop (points)")
    for score in report.scores:
        shown = score.to_dict()
        table.add_row(score.kind, str(score.n), f"{shown['base_accuracy']:.3f}", f"{shown['tuned_accuracy']:.3f}",
                      f"{score.drop_points:+.1f}")
    console.print(table)
    console.print(
        f"KL(base || tuned) {report.kl_per_token:.4g} nats per token over {report.kl_tokens} answer tokens of "
        f"{report.kl_prompts} open prompts (largest for one prompt: {report.kl_max_prompt:.4g})",
        highlight=False, soft_wrap=True,
    )
    if report.regressions:
        console.print(f"base right, tuned wrong: {', '.join(report.regressions)}", highlight=False, soft_wrap=True)
    console.print(f"{report.model} vs {report.base_model}; base answers "
                  f"{'from the cache' if report.base_answers_cached else 'generated'}; {report.seconds} s",
                  highlight=False, soft_wrap=True)


# Preference alignment: RLAIF pairs and DPO (imported here, beside their commands, which read defaults from them)
from clauseloop.finetune.dpo import DPORunConfig
from clauseloop.finetune.pairs import PairsConfig


@app.command("pairs")
def pairs_command(
    out: str = typer.Option(..., "--out", help=help_of(PairsConfig, "out")),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    student: str = typer.Option(default_of(PairsConfig, "student"), "--student", help=help_of(PairsConfig, "student")),
    judge: str = typer.Option(default_of(PairsConfig, "judge"), "--judge", help=help_of(PairsConfig, "judge")),
    limit_contracts: Optional[int] = typer.Option(None, min=1, help=help_of(PairsConfig, "limit_contracts")),
    candidates: int = typer.Option(default_of(PairsConfig, "candidates"), "--candidates",
                                   help=help_of(PairsConfig, "candidates")),
    questions: int = typer.Option(default_of(PairsConfig, "questions_per_contract"), "--questions", min=1,
                                  help=help_of(PairsConfig, "questions_per_contract")),
    categories: Optional[str] = typer.Option(None, "--categories", help="Comma-separated categories; default all."),
    temperature: float = typer.Option(default_of(PairsConfig, "temperature"), "--temperature",
                                      help=help_of(PairsConfig, "temperature")),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON."),
) -> None:
    """Build (or continue) RLAIF preference pairs: sampled student answers ranked by grounding, gold and judge."""
    from clauseloop.engine.reachability import RoleUnavailable
    from clauseloop.finetune.pairs import build_pairs

    with user_errors():
        config = PairsConfig(
            out=out, data=data, student=student, judge=judge, limit_contracts=limit_contracts, candidates=candidates,
            questions_per_contract=questions, temperature=temperature,
            categories=tuple(c.strip() for c in categories.split(",") if c.strip()) if categories else None,
        )
        try:
            report = build_pairs(config)
        except RoleUnavailable as error:
            fail(str(error))
    if as_json:
        print_json(report)
        return
    counts = report["counts"].get("rlaif", {})
    console.print(", ".join(f"{name} {value}" for name, value in sorted(counts.items())), highlight=False,
                  soft_wrap=True)
    agreement = report["judge_gold_agreement"]
    console.print(
        f"{report['pairs']} pairs from {report['contracts']} contracts; judge agrees with gold on "
        f"{agreement['agree']} of {agreement['agree'] + agreement['disagree']}; {report['file']} "
        f"(report: {report['file']}.report.json)", highlight=False, soft_wrap=True,
    )


@app.command("dpo")
def dpo_command(
    pairs: str = typer.Option(..., "--pairs", help=help_of(DPORunConfig, "pairs")),
    out: str = typer.Option(..., "--out", help=help_of(DPORunConfig, "out")),
    from_adapter: Optional[str] = typer.Option(None, "--from", help=help_of(DPORunConfig, "from_adapter")),
    from_base: bool = typer.Option(False, "--from-base", help=help_of(DPORunConfig, "from_base")),
    method: str = typer.Option(default_of(DPORunConfig, "method"), "--method", help=help_of(DPORunConfig, "method")),
    loss: str = typer.Option(default_of(DPORunConfig, "loss"), "--loss", help=help_of(DPORunConfig, "loss")),
    batch_size: int = typer.Option(default_of(DPORunConfig, "batch_size"), "--batch-size",
                                   help=help_of(DPORunConfig, "batch_size")),
    beta: float = typer.Option(default_of(DPORunConfig, "beta"), "--beta", help=help_of(DPORunConfig, "beta")),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help=help_of(DPORunConfig, "max_steps")),
    epochs: float = typer.Option(default_of(DPORunConfig, "epochs"), "--epochs", help=help_of(DPORunConfig, "epochs")),
    lr: float = typer.Option(default_of(DPORunConfig, "learning_rate"), "--lr",
                             help=help_of(DPORunConfig, "learning_rate")),
    max_length: int = typer.Option(default_of(DPORunConfig, "max_length"), "--max-length",
                                   help=help_of(DPORunConfig, "max_length")),
    resume: bool = typer.Option(False, "--resume", help=help_of(DPORunConfig, "resume")),
    device: str = typer.Option(default_of(DPORunConfig, "device"), "--device", help=help_of(DPORunConfig, "device")),
    as_json: bool = typer.Option(False, "--json", help="Print the adapter manifest JSON."),
) -> None:
    """Align the student's adapter with DPO (or KTO) on preference pairs (reference = the SFT adapter; resumable;
    on GPUs with `accelerate launch $(which clauseloop) finetune dpo ...`)."""
    import contextlib
    import sys

    from clauseloop.finetune.dpo import train_dpo

    with user_errors():
        config = DPORunConfig(pairs=pairs, out=out, from_adapter=from_adapter, from_base=from_base, method=method,
                              loss=loss, batch_size=batch_size, beta=beta, max_steps=max_steps, epochs=epochs, learning_rate=lr, max_length=max_length,
                              resume=resume, device=device)
        # the trainer prints its per-step log lines to stdout: keep stdout for the result (and --json clean)
        with contextlib.redirect_stdout(sys.stderr):
            result = train_dpo(config)
    if as_json:
        print_json(result.manifest)
        return
    metrics = result.metrics
    console.print(f"adapter: {result.adapter_dir}", highlight=False, soft_wrap=True)
    console.print(
        f"{metrics['steps']} steps, {config.method.upper()} loss {metrics['train_loss']}, reward accuracy "
        f"{metrics.get('rewards/accuracies')}, margin {metrics.get('rewards/margins')}, {metrics['seconds']} s",
        highlight=False,
    )
