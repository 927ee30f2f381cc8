"""The `clauseloop` command: a thin typer + rich layer over the library.

Each command group lives in its own module and is registered here; the library never prints, the CLI does.
"""

from __future__ import annotations

import logging

import typer

from clauseloop.cli import data as data_commands
from clauseloop.cli import feedback as feedback_commands
from clauseloop.cli import finetune as finetune_commands
from clauseloop.cli import index as index_commands
from clauseloop.cli import loop as loop_command
from clauseloop.cli import models as model_commands
from clauseloop.cli import optimize as optimize_command
from clauseloop.cli import program as program_commands
from clauseloop.cli import run as run_command
from clauseloop.cli import serve as serve_command
from clauseloop.cli.quiet import quiet_libraries

app = typer.Typer(
    name="clauseloop",
    help="Contract review on CUAD: a DSPy program, optimized, distilled into a local student, and kept improving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_commands.app, name="data")
app.add_typer(model_commands.app, name="models")
app.add_typer(index_commands.app, name="index")
app.add_typer(finetune_commands.app, name="finetune")
app.add_typer(feedback_commands.app, name="feedback")
app.command("run")(run_command.run)
app.command("loop")(loop_command.loop)
app.command("evaluate")(program_commands.evaluate)
app.command("ask")(program_commands.ask)
app.command("optimize")(optimize_command.optimize)
app.command("serve")(serve_command.serve)
app.command("serve-lm")(serve_command.serve_lm)


@app.callback()
def _configure(verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log progress from the library, and let libraries print their progress bars "
                                       "and warnings.")) -> None:
    from rich.logging import RichHandler

    quiet_libraries(verbose)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(show_path=False)],
    )


def main() -> None:
    app()
