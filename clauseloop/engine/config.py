"""Engine and server settings: the single source of defaults (the CLI reads its defaults and help from here)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class EngineConfig:
    """How one local model is loaded and how concurrent requests are batched."""

    max_batch_size: int = field(default=16, metadata=_help("Most requests decoded together in one batch."))
    max_wait_ms: float = field(
        default=25.0,
        metadata=_help("A batch waits this long after the newest arrival for more requests to join."),
    )
    max_gather_ms: float = field(
        default=250.0, metadata=_help("A request never waits longer than this for company before decoding starts.")
    )
    length_ratio: float = field(
        default=2.0,
        metadata=_help("Prompts batched together differ in length by at most this factor, so a long one pads no one."),
    )
    max_batch_tokens: int = field(
        default=32768, metadata=_help("Most padded prompt tokens in one batch; bounds prefill memory.")
    )
    min_shared_prefix: int = field(
        default=16, metadata=_help("A batch whose prompts share this many leading tokens prefills them once.")
    )
    default_max_tokens: int = field(default=256, metadata=_help("Tokens generated when a request sets no limit."))
    dtype: str = field(default="float32", metadata=_help("torch dtype of the weights (float32 is fastest on CPU)."))
    merge_adapter: bool = field(
        default=True, metadata=_help("Merge a LoRA adapter into the weights at load time (faster decoding).")
    )

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.length_ratio < 1:
            raise ValueError(f"length_ratio must be >= 1, got {self.length_ratio}")
        if self.max_wait_ms < 0 or self.max_gather_ms < 0:
            raise ValueError("max_wait_ms and max_gather_ms must be >= 0")


@dataclass(frozen=True)
class ServerConfig:
    """Where `clauseloop serve-lm` listens and what it calls the model."""

    host: str = field(
        default="127.0.0.1", metadata=_help("Interface to bind; loopback only unless you mean to expose it.")
    )
    port: int = field(default=8000, metadata=_help("TCP port to listen on."))
    served_name: str | None = field(
        default=None, metadata=_help("Model id clients send; default: the model name (+ adapter directory name).")
    )
    api_key: str | None = field(
        default=None, metadata=_help("Require this bearer token (for a non-loopback host); default: no auth.")
    )


def help_of(config_class: type, name: str) -> str:
    """The help text of a config field, for CLI options."""
    for item in fields(config_class):
        if item.name == name:
            return item.metadata.get("help", "")
    raise KeyError(f"{config_class.__name__} has no field {name!r}")


def default_of(config_class: type, name: str):
    return getattr(config_class(), name)
