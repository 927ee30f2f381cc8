"""`clauseloop serve`: the review page, API and student in one server; `clauseloop serve-lm MODEL`: the raw LM."""

from __future__ import annotations

from typing import Optional

import typer

from clauseloop.cli.common import console, fail
from clauseloop.engine.config import EngineConfig, ServerConfig, default_of, help_of
from clauseloop.serve.config import API_KEY_ENV, ServeConfig


def serve_lm(
    model: str = typer.Argument(..., help="A model-store name or a local model directory (optionally +ADAPTER_DIR)."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="A PEFT adapter directory to apply."),
    host: str = typer.Option(default_of(ServerConfig, "host"), help=help_of(ServerConfig, "host")),
    port: int = typer.Option(default_of(ServerConfig, "port"), help=help_of(ServerConfig, "port")),
    name: Optional[str] = typer.Option(None, "--name", help=help_of(ServerConfig, "served_name")),
    api_key: Optional[str] = typer.Option(
        None, envvar="CLAUSELOOP_SERVE_API_KEY", help=help_of(ServerConfig, "api_key")
    ),
    max_batch_size: int = typer.Option(
        default_of(EngineConfig, "max_batch_size"), min=1, help=help_of(EngineConfig, "max_batch_size")
    ),
    max_wait_ms: float = typer.Option(
        default_of(EngineConfig, "max_wait_ms"), min=0, help=help_of(EngineConfig, "max_wait_ms")
    ),
) -> None:
    """Serve MODEL at http://HOST:PORT/v1 for dspy.LM("openai/NAME", api_base=..., api_key=...) and other clients."""
    from clauseloop.engine.batcher import get_engine
    from clauseloop.engine.server import default_served_name, serve
    from clauseloop.models import ModelNotAvailable, split_adapter

    base, inline_adapter = split_adapter(model)
    adapter = adapter or inline_adapter
    server_config = ServerConfig(
        host=host, port=port, served_name=name or default_served_name(base, adapter), api_key=api_key
    )
    try:
        with console.status(f"loading {model}"):
            engine = get_engine(base, adapter, EngineConfig(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms))
    except (ModelNotAvailable, FileNotFoundError) as error:
        fail(str(error))
    if host not in {"127.0.0.1", "localhost", "::1"} and api_key is None:
        console.print(f"[yellow]warning:[/] {host} is reachable from other machines and no --api-key is set")
    url = f"http://{host}:{port}/v1"
    console.print(
        f"serving [bold]{server_config.served_name}[/] at {url}\n"
        f'  dspy.LM("openai/{server_config.served_name}", api_base="{url}", api_key="{api_key or "local"}")',
        highlight=False,
    )
    try:
        serve(engine, server_config)
    finally:
        engine.close()


def serve(
    host: str = typer.Option(default_of(ServeConfig, "host"), help=help_of(ServeConfig, "host")),
    port: int = typer.Option(default_of(ServeConfig, "port"), help=help_of(ServeConfig, "port")),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar=API_KEY_ENV, help=help_of(ServeConfig, "api_key")),
    student: str = typer.Option(default_of(ServeConfig, "student"), help=help_of(ServeConfig, "student")),
    db: str = typer.Option(default_of(ServeConfig, "db"), help=help_of(ServeConfig, "db")),
    max_body_bytes: int = typer.Option(
        default_of(ServeConfig, "max_body_bytes"), min=1024, help=help_of(ServeConfig, "max_body_bytes")
    ),
    gate: bool = typer.Option(default_of(ServeConfig, "gate"), help=help_of(ServeConfig, "gate")),
    openai_api: bool = typer.Option(default_of(ServeConfig, "openai_api"), help=help_of(ServeConfig, "openai_api")),
    reports_dir: Optional[str] = typer.Option(None, help=help_of(ServeConfig, "reports_dir")),
) -> None:
    """Serve the review page at http://HOST:PORT/, the API under /api and the student under /v1."""
    import uvicorn

    from clauseloop.serve import create_app

    config = ServeConfig(host=host, port=port, api_key=api_key, student=student, db=db,
                         max_body_bytes=max_body_bytes, gate=gate, openai_api=openai_api, reports_dir=reports_dir)
    if host not in {"127.0.0.1", "localhost", "::1"} and api_key is None:
        console.print(f"[yellow]warning:[/] {host} is reachable from other machines and no --api-key is set")
    try:
        app = create_app(config)
    except (OSError, ValueError) as error:
        fail(f"cannot open the database {db}: {error}")
    console.print(f"clauseloop: the review page at [bold]http://{host}:{port}/[/], the API at /api, the student "
                  f"({student}) at /v1; data in {db}", highlight=False)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        app.state.services.close()
