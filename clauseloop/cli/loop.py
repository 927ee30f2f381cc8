"""`clauseloop loop`: re-run what changed, tune the student incrementally, and promote it only through the gate."""

from __future__ import annotations

import contextlib
import sys
from typing import Optional

import typer

from clauseloop.cli.common import DATA_HELP, console, err_console, fail, print_json, user_errors
from clauseloop.engine.config import default_of, help_of
from clauseloop.loop.pipeline import LoopConfig


def loop(
    out: str = typer.Option(default_of(LoopConfig, "out"), "--out", help=help_of(LoopConfig, "out")),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    registry: Optional[str] = typer.Option(None, "--registry", help=help_of(LoopConfig, "registry")),
    eval_limit: int = typer.Option(default_of(LoopConfig, "eval_limit"), "--eval-limit", min=1,
                                   help=help_of(LoopConfig, "eval_limit")),
    sft_steps: int = typer.Option(default_of(LoopConfig, "sft_steps"), "--sft-steps", min=1,
                                  help=help_of(LoopConfig, "sft_steps")),
    lr: float = typer.Option(default_of(LoopConfig, "learning_rate"), "--lr", help=help_of(LoopConfig, "learning_rate")),
    retention_limit: int = typer.Option(default_of(LoopConfig, "retention_limit"), "--retention-limit", min=2,
                                        help=help_of(LoopConfig, "retention_limit")),
    as_json: bool = typer.Option(False, "--json", help="Print the loop report as JSON."),
) -> None:
    """Run the loop: data → index → SFT data → SFT → evaluate → retention → gate → promote; unchanged stages skip."""
    from clauseloop.loop.pipeline import run_loop
    from clauseloop.loop.runner import LoopLocked
    from clauseloop.models.registry import RegistryError

    config = LoopConfig(out=out, data=data, registry=registry, eval_limit=eval_limit, sft_steps=sft_steps,
                        learning_rate=lr, retention_limit=retention_limit, progress=not as_json)

    def show(record) -> None:
        detail = f"{record.seconds:.1f} s" if record.status == "ran" else record.reason
        err_console.print(f"[bold]{record.name}[/] {record.status} ({detail})", highlight=False)

    try:
        with user_errors(), contextlib.redirect_stdout(sys.stderr):  # the trainer logs to stdout: keep it for --json
            report = run_loop(config, on_stage=show)
    except (LoopLocked, RegistryError) as error:
        fail(str(error))
    if as_json:
        print_json(report)
        return
    print_decision(report)


def print_decision(report: dict) -> None:
    decision = report.get("decision")
    if decision is None:
        console.print(f"no new model: {report['current']} stays ({report['seconds']} s)", highlight=False)
        return
    verdict = "[green]promoted[/]" if decision["promote"] else "[red]refused[/]"
    console.print(f"candidate {decision['version']}: {verdict} (current was {report['current']})")
    for name, row in decision["evidence"]["metrics"].items():
        low, high = row["ci"]
        console.print(f"  {name}: {row['current']:.3f} → {row['candidate']:.3f}, paired 95 % interval of the "
                      f"difference [{low:+.3f}, {high:+.3f}]", highlight=False)
    if "retention_drop_points" in decision["evidence"]:
        console.print(f"  retention: {decision['evidence']['retention_drop_points']:.1f} points below the base",
                      highlight=False)
    for reason in decision["reasons"]:
        console.print(f"  refused because {reason}", highlight=False)
    console.print(f"done in {report['seconds']} s", highlight=False)
