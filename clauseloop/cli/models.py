"""`clauseloop models ...`: list, prepare and try the local models."""

from __future__ import annotations

import typer
from rich.table import Table

from clauseloop.cli.common import console, err_console, fail

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
