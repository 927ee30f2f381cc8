"""`clauseloop loop`: re-run what changed, tune the student incrementally, and promote it only through the gate."""

from __future__ import annotations

from typing import Optional

import typer

from clauseloop.cli.common import DATA_HELP, console, err_console, print_json, user_errors
from clauseloop.cli.quiet import library_stdout
from clauseloop.engine.config import default_of, help_of
from clauseloop.loop.pipeline import LoopConfig


def _default(name: str) -> str:
    return f"{help_of(LoopConfig, name)} (default: {default_of(LoopConfig, name)})"


def loop(
    config_file: Optional[str] = typer.Option(None, "--config", help="TOML file with a \\[loop] table (and "
                                                                     "\\[roles]); flags given here win over it."),
    out: Optional[str] = typer.Option(None, "--out", help=_default("out")),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    feedback: Optional[str] = typer.Option(None, "--feedback", help=help_of(LoopConfig, "feedback")),
    registry: Optional[str] = typer.Option(None, "--registry", help=help_of(LoopConfig, "registry")),
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit", min=1, help=_default("eval_limit")),
    sft_steps: Optional[int] = typer.Option(None, "--sft-steps", min=1, help=_default("sft_steps")),
    dpo_steps: Optional[int] = typer.Option(None, "--dpo-steps", min=1, help=_default("dpo_steps")),
    lr: Optional[float] = typer.Option(None, "--lr", help=_default("learning_rate")),
    retention_limit: Optional[int] = typer.Option(None, "--retention-limit", min=2, help=_default("retention_limit")),
    as_json: bool = typer.Option(False, "--json", help="Print the loop report as JSON."),
) -> None:
    """Run the loop: data → index → drift → SFT data → SFT → feedback pairs → DPO → evaluate → retention → gate →
    promote; unchanged stages are skipped."""
    from clauseloop.loop.pipeline import load_loop_config, run_loop

    flags = {"out": out, "data": data, "feedback": feedback, "registry": registry, "eval_limit": eval_limit,
             "sft_steps": sft_steps, "dpo_steps": dpo_steps, "learning_rate": lr, "retention_limit": retention_limit}
    given = {name: value for name, value in flags.items() if value is not None}
    with user_errors():
        config = (load_loop_config(config_file, **given, progress=not as_json) if config_file
                  else LoopConfig(**given, progress=not as_json))
    with user_errors(), library_stdout():  # the trainer logs to stdout: keep it for --json
        report = run_loop(config, on_stage=show_stage)
    if as_json:
        print_json(report)
        return
    print_decision(report)


def show_stage(record) -> None:
    """One line per loop stage as it finishes, on stderr: ran (with its time) or skipped (with why)."""
    detail = f"{record.seconds:.1f} s" if record.status == "ran" else record.reason
    err_console.print(f"  [bold]{record.name}[/] {record.status} ({detail})", highlight=False)


def print_drift(drift: dict) -> None:
    """The flagged drift signals with their values (nothing when none is flagged)."""
    for name in drift.get("flagged", []):
        signal = drift["signals"][name]
        console.print(f"drift: {name.replace('_', ' ')} {signal['value']:+.3f} (threshold {signal['threshold']}) "
                      f"against the reference of {drift['reference']['version']}", highlight=False)


def print_decision(report: dict) -> None:
    print_drift(report.get("drift") or {})
    decision = report.get("decision")
    if decision is None:
        console.print(f"no new model: {report['current']} stays ({report['seconds']} s)", highlight=False)
        return
    verdict = "[green]promoted[/]" if decision["promote"] else "[red]refused[/]"
    console.print(f"candidate {decision['version']}: {verdict} (current was {report['current']})")
    evidence = decision["evidence"]
    unit = f"{evidence.get('resampled', 'contracts')} resampled, {evidence['questions']} questions"
    for name, row in evidence["metrics"].items():
        low, high = row["ci"]
        console.print(f"  {name}: {row['current']:.3f} → {row['candidate']:.3f}, paired 95 % interval of the "
                      f"difference [{low:+.3f}, {high:+.3f}] ({unit})", highlight=False)
    if "retention_drop_points" in evidence:
        console.print(f"  retention: {-evidence['retention_drop_points']:+.1f} points of accuracy against the base",
                      highlight=False)
    for reason in decision["reasons"]:
        console.print(f"  refused because {reason}", highlight=False)
    console.print(f"done in {report['seconds']} s", highlight=False)
