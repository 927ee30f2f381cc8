"""Helpers shared by CLI commands: consoles, clean error exits, JSON output."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn

import typer
from rich.console import Console


class _Console(Console):
    """A rich console whose plain messages never wrap when output is not a terminal, so an id or a path in an
    error stays on one line for ``grep`` and logs; tables and panels still fit the width."""

    def print(self, *objects: Any, soft_wrap: bool | None = None, **kwargs: Any) -> None:
        if soft_wrap is None and not self.is_terminal and all(isinstance(o, str) for o in objects):
            soft_wrap = True
        super().print(*objects, soft_wrap=soft_wrap, **kwargs)


console = _Console()
err_console = _Console(stderr=True)

DATA_HELP = "CUAD file (CUADv1.json, test.json, train_separate_questions.json, .gz), 'hub:NAME', or omit for the demo."


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error (no traceback: the message says how to fix it) and exit."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad input (a malformed file, a missing path or model, an unknown contract or setting) exits with its message."""
    from clauseloop.data import CuadFormatError
    from clauseloop.loop.runner import LoopLocked
    from clauseloop.models.registry import RegistryError
    from clauseloop.models.store import ModelNotAvailable

    try:
        yield
    except (CuadFormatError, FileNotFoundError, KeyError, ValueError, ModelNotAvailable, LoopLocked,
            RegistryError) as error:
        fail(str(error))


def print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def load_data_or_fail(path: str | None, lenient: bool = False):
    """Load a dataset for a command, turning user mistakes into clean messages."""
    from clauseloop.data import CuadFormatError, load_cuad

    try:
        dataset = load_cuad(path, lenient=lenient)
    except (CuadFormatError, FileNotFoundError) as error:
        fail(str(error))
    for problem in dataset.skipped:
        err_console.print(f"[yellow]skipped:[/] {problem}", highlight=False)
    return dataset
