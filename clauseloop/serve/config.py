"""Settings of `clauseloop serve`: the single source of its defaults (the CLI reads defaults and help from here).

Kept free of heavy imports, so the CLI and the feedback commands can read it without loading FastAPI or torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

API_KEY_ENV = "CLAUSELOOP_API_KEY"
DEFAULT_DB = "runs/serve/clauseloop.db"


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class ServeConfig:
    """Where the server listens, what it accepts, where it keeps contracts and feedback, and which LM answers."""

    host: str = field(default="127.0.0.1", metadata=_help("Interface to bind; loopback only unless you mean to "
                                                          "expose it (then set an API key)."))
    port: int = field(default=8080, metadata=_help("TCP port to listen on."))
    api_key: str | None = field(default=None, metadata=_help(
        f"Require `Authorization: Bearer KEY` on every API call (also ${API_KEY_ENV}); default: no key."))
    max_body_bytes: int = field(default=2_000_000, metadata=_help("Largest request body accepted (413 above)."))
    db: str = field(default=DEFAULT_DB, metadata=_help("SQLite file for contracts and feedback (created)."))
    student: str = field(default="student", metadata=_help(
        "The answering LM: a role (student) or a model string (base, smollm2-135m-instruct, DIR+ADAPTER, "
        "openai/...)."))
    review_threads: int = field(default=16, metadata=_help("Concurrent LM requests in one review (batched)."))
    gate: bool = field(default=True, metadata=_help("Skip the LM for categories the presence gate rules out."))
    openai_api: bool = field(default=True, metadata=_help("Also serve the local student at /v1 (OpenAI API)."))
    max_finished_jobs: int = field(default=100, metadata=_help("Finished reviews kept for polling (oldest dropped)."))
    reports_dir: str | None = field(default=None, metadata=_help(
        "Evaluation reports shown at /reports (*.json and */report.json, with the tables of their .md files); "
        "default: bench/results of the source checkout, if there is one."))

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ValueError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 1..65535 (0: any free port), got {self.port}")
        if self.review_threads < 1:
            raise ValueError(f"review_threads must be >= 1, got {self.review_threads}")
