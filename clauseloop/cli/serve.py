"""`clauseloop serve-lm MODEL`: an OpenAI-compatible server over the local batching engine."""

from __future__ import annotations

from typing import Optional

import typer

from clauseloop.cli.common import console, fail
from clauseloop.engine.config import EngineConfig, ServerConfig, default_of, help_of


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
