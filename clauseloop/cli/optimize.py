"""`clauseloop optimize`: compile the QA program with a DSPy teleprompter and save it with its dev scores.

Thin over :func:`clauseloop.optimizers.run.optimize`; defaults and help come from
:class:`~clauseloop.optimizers.config.OptimizeConfig`.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from clauseloop.cli.common import DATA_HELP, console, err_console, fail, print_json, user_errors
from clauseloop.engine.config import default_of, help_of
from clauseloop.optimizers.config import OPTIMIZERS, OptimizeConfig

SCORE_ROWS = ("aupr", "prec_at_80_recall", "f1", "no_answer_accuracy", "dropped_span_rate")


def _option(name: str, *flags: str, **extra):
    """A typer option whose default and help are the OptimizeConfig field's."""
    return typer.Option(default_of(OptimizeConfig, name), *flags, help=help_of(OptimizeConfig, name), **extra)


def optimize(
    optimizer: str = _option("optimizer", "--optimizer", metavar="|".join(OPTIMIZERS)),
    out: Path = typer.Option(..., "--out", help=help_of(OptimizeConfig, "out_dir")),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    teacher: str = _option("teacher", "--teacher"),
    student: str = _option("student", "--student"),
    limit: Optional[int] = _option("max_train_examples", "--limit", min=1),
    val_limit: Optional[int] = _option("max_val_examples", "--val-limit", min=1),
    max_calls: Optional[int] = _option("max_calls", "--max-calls", min=1),
    threads: int = _option("threads", "--threads", min=1),
    bootstrapped_demos: int = _option("max_bootstrapped_demos", "--bootstrapped-demos", min=0),
    labeled_demos: int = _option("max_labeled_demos", "--labeled-demos", min=0),
    candidates: int = _option("num_candidate_programs", "--candidates", min=0),
    seed: int = _option("seed", "--seed"),
    gate: bool = _option("gate", "--gate/--no-gate"),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest JSON (progress goes to stderr)."),
) -> None:
    """Optimize the QA program (demos, instructions) on the train split, score it on dev, save it to --out."""
    from clauseloop.engine.reachability import RoleUnavailable
    from clauseloop.optimizers import CallBudgetExceeded
    from clauseloop.optimizers.run import optimize as run_optimize

    with user_errors():
        config = OptimizeConfig(
            optimizer=optimizer, data=data, out_dir=str(out), teacher=teacher, student=student,
            max_train_examples=limit, max_val_examples=val_limit, max_calls=max_calls, threads=threads,
            max_bootstrapped_demos=bootstrapped_demos, max_labeled_demos=labeled_demos,
            num_candidate_programs=candidates, seed=seed, gate=gate,
        )
    if not as_json:
        err_console.print(f"optimizing with {optimizer} (teacher {teacher}, student {student}); DSPy reports progress")
    # DSPy's teleprompters print to stdout: with --json, stdout is for the manifest only.
    with redirect_stdout(sys.stderr) if as_json else nullcontext(), user_errors():
        try:
            manifest = run_optimize(config)
        except (CallBudgetExceeded, RoleUnavailable) as error:
            fail(str(error))
        except ImportError as error:  # MIPROv2 needs optuna
            fail(f"{error} (install clauseloop's dependencies: `make setup`)")
    if as_json:
        print_json(manifest)
        return
    show_manifest(manifest)


def show_manifest(manifest: dict) -> None:
    scores = manifest["dev_scores"]
    table = Table("dev metric", "value", title=f"{manifest['optimizer']} on {scores['questions']} dev questions")
    for key in SCORE_ROWS:
        value = scores.get(key)
        table.add_row(key, f"{value:.3f}" if isinstance(value, (int, float)) else "–")
    console.print(table)
    calls, seconds = manifest["lm_calls"], manifest["seconds"]
    per_role = ", ".join(f"{role} {count}" for role, count in calls["calls"].items()) or "none"
    console.print(
        f"LM calls: {calls['total_calls']} ({per_role}; {sum(calls['cache_hits'].values())} answered from the "
        f"cache); {sum(seconds.values()):.1f} s"
    )
    demos = ", ".join(f"{name}: {p['demos']} demos" for name, p in manifest.get("program", {}).items())
    console.print(f"program ({demos}): {manifest['files']['program']}\nmanifest: {manifest['files']['manifest']}")
