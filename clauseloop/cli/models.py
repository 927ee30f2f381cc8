"""`clauseloop models ...`: list, prepare and try the local models; promote or roll back student versions."""

from __future__ import annotations

import typer
from rich.table import Table

from clauseloop.cli.common import console, err_console, fail, user_errors

app = typer.Typer(help="The offline model store.", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """Named models, whether their weights package is installed, and the cache directory."""
    from clauseloop.models import NAMED_MODELS, ModelNotAvailable, cache_root
    from clauseloop.models.store import _package_dir

    table = Table()
    table.add_column("name", no_wrap=True)  # names are what users type: never truncate them
    table.add_column("kind", no_wrap=True)
    table.add_column("installed")
    table.add_column("description")
    for info in NAMED_MODELS.values():
        try:
            installed = "yes" if _package_dir(info.package) else "no"
        except ModelNotAvailable:
            installed = "[red]no[/]"
        table.add_row(info.name, info.kind, installed, f"{info.description}; pip package {info.package}")
    console.print(table)
    console.print(f"cache: {cache_root()}  (set CLAUSELOOP_CACHE to move it); any local directory or hub id also works")
    _print_registry()


def _open_registry():
    from clauseloop.models.registry import Registry

    with user_errors():
        return Registry()


def _number(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def _print_registry() -> None:
    """The student versions the loop made; the promoted one is what `clauseloop-student` runs."""
    registry = _open_registry()
    if not registry.versions:
        console.print(f"student versions: none in {registry.file}; `clauseloop-student` is the shipped adapter")
        return
    table = Table(title=f"student versions ({registry.file})")
    for column in ("id", "status", "parent", "AUPR", "F1", "retention drop"):
        table.add_column(column, no_wrap=True)
    for version in registry.versions:
        numbers = [_number(version.metrics.get(key)) for key in ("aupr", "f1", "retention_drop")]
        table.add_row(version.id, version.status, version.parent or "shipped", *numbers)
    console.print(table)
    for version in registry.versions:  # paths on lines of their own: a table would cut them
        console.print(f"{version.id}: {version.model}", highlight=False, soft_wrap=True)


@app.command()
def promote(version: str = typer.Argument(..., help="A version id from `clauseloop models list` (v1, v2 …).")) -> None:
    """Make a registry version the student (`clauseloop-student`) by hand, bypassing the gate."""
    registry = _open_registry()
    with user_errors():
        promoted = registry.promote(version, {"promote": True, "reasons": ["promoted by hand"], "evidence": {}})
    console.print(f"{promoted.id} is now the student: {promoted.model}", highlight=False, soft_wrap=True)


@app.command()
def rollback() -> None:
    """Demote the promoted version; the one it replaced (or the shipped adapter) becomes the student again."""
    registry = _open_registry()
    with user_errors():
        previous = registry.rollback()
    console.print(f"rolled back; the student is now {previous.id if previous else 'the shipped adapter'}")


@app.command()
def prepare(name: str = typer.Argument(..., help="A named model, a local directory, or a hub id.")) -> None:
    """Convert (first time) or find (later) a model; prints where it lives."""
    from clauseloop.models import ModelNotAvailable
    from clauseloop.models import prepare as prepare_model

    try:
        with err_console.status(f"preparing {name} (the first time converts it; ~40 s)"):
            prepared = prepare_model(name)
    except ModelNotAvailable as error:
        fail(str(error))
    state = "converted and cached" if prepared.created else "ready (cached)"
    console.print(f"{prepared.name}: {state} in {prepared.seconds:.1f}s at {prepared.path}")


@app.command()
def generate(
    name: str = typer.Argument(..., help="A causal LM: a named model, a local directory (+adapter), or a hub id."),
    prompt: str = typer.Argument(..., help="The user message."),
    max_new_tokens: int = typer.Option(48, min=1, help="Tokens to generate."),
) -> None:
    """One greedy chat completion from a local model."""
    from clauseloop.models import ModelNotAvailable, generate_text

    try:
        with err_console.status(f"loading {name} and generating"):
            text = generate_text(name, prompt, max_new_tokens=max_new_tokens)
    except ModelNotAvailable as error:
        fail(str(error))
    console.print(text, highlight=False)
