"""Roles: which LM plays teacher, student and judge, and one function that turns a model string into an LM.

A model string is one of

* a model-store name (``smollm2-135m-instruct``, ``clauseloop-student`` = SmolLM2 + the shipped distilled adapter,
  ``base`` = the untrained SmolLM2) or a local model directory, optionally ``+ADAPTER_DIR``
  (``runs/distill/merged`` or ``smollm2-135m-instruct+runs/distill/adapter``) → ``LocalLM`` in this process;
* any LiteLLM string (``openai/gpt-4o-mini``, ``bedrock/…``, ``hosted_vllm/…``, ``ollama_chat/…``, or
  ``openai/NAME`` with ``api_base`` pointing at ``clauseloop serve-lm``) → ``dspy.LM``;
* ``local:ID`` forces the local engine for an id that looks like a LiteLLM string (a hub id already in the HF cache);
* a role name (``judge``) → that role's LM as configured below.

Roles come from, later winning: the defaults (every role local, so everything runs offline), a TOML/JSON file
(``$CLAUSELOOP_ROLES``, or ``load_roles(path)`` from Python), environment variables (``CLAUSELOOP_TEACHER``,
``CLAUSELOOP_TEACHER_API_BASE``, … for each role), and CLI flags (``--teacher``, ``--student``, ``--judge``).
A file looks like::

    [teacher]                      # or a bare string: teacher = "openai/gpt-4o-mini"
    model = "openai/gpt-4o-mini"
    api_key_env = "OPENAI_API_KEY" # the variable holding the key; keys never go in the file
    [judge]
    model = "hosted_vllm/Qwen/Qwen2.5-7B-Instruct"
    api_base = "http://127.0.0.1:8001/v1"

(the roles may also sit under a ``[roles]`` table of a larger config file).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from clauseloop.models import NAMED_MODELS, SMOLLM2, STUDENT
from clauseloop.models.store import BASE_ALIAS

ROLES = ("teacher", "student", "judge")
LOCAL_PREFIX = "local:"


@dataclass(frozen=True)
class RoleConfig:
    """One role's LM. ``api_base``/``api_key_env`` apply to LiteLLM models only."""

    model: str = field(default=SMOLLM2, metadata={"help": "Model-store name, directory (+adapter) or LiteLLM string."})
    temperature: float = field(default=0.0, metadata={"help": "Default sampling temperature (0: greedy)."})
    max_tokens: int = field(default=256, metadata={"help": "Default most tokens per completion."})
    api_base: str | None = field(default=None, metadata={"help": "Server URL for a LiteLLM model (…/v1)."})
    api_key_env: str | None = field(default=None, metadata={"help": "Environment variable holding the API key."})

    def lm(self, **overrides: Any):
        """This role's LM (``overrides`` are LM kwargs such as ``cache=False``)."""
        settings = {key: value for key, value in asdict(self).items() if key != "model"}
        return make_lm(self.model, **{**settings, **overrides})


@dataclass(frozen=True)
class RolesConfig:
    """The LMs of the loop. Defaults are local, so the whole loop runs offline: the student is SmolLM2 with the
    shipped distilled adapter (``clauseloop-student``; ``base`` is the untrained SmolLM2), teacher and judge are
    SmolLM2 itself (no stronger instruct model ships offline: point them at a real one for real use)."""

    teacher: RoleConfig = field(default_factory=RoleConfig)
    student: RoleConfig = field(default_factory=lambda: RoleConfig(model=STUDENT))
    judge: RoleConfig = field(default_factory=RoleConfig)

    def role(self, name: str) -> RoleConfig:
        if name not in ROLES:
            raise ValueError(f"unknown role {name!r}; roles are {', '.join(ROLES)}")
        return getattr(self, name)

    def lm(self, name: str, **overrides: Any):
        """The LM for role ``name`` ("teacher", "student" or "judge")."""
        return self.role(name).lm(**overrides)

    def describe(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(self.role(name)) for name in ROLES}


def is_local_model(model: str) -> bool:
    """True for what the local engine serves: ``local:…``, model-store names and existing directories."""
    base = model.split("+", 1)[0]
    if model.startswith(LOCAL_PREFIX) or base in NAMED_MODELS or base == BASE_ALIAS:
        return True
    return base.startswith((".", "/", "~")) or Path(base).expanduser().is_dir()


def make_lm(model: str, **settings: Any):
    """A ``LocalLM`` for a local model string, a ``dspy.LM`` for a LiteLLM string (see the module docstring).

    ``model`` may also be a role name ("teacher", "student", "judge"): that role's LM from ``load_roles()``.
    ``settings`` are ``RoleConfig`` fields (temperature, max_tokens, api_base, api_key_env) or other LM kwargs.
    """
    if model in ROLES:
        return load_roles().lm(model, **settings)
    defaults = RoleConfig()
    settings = {"temperature": defaults.temperature, "max_tokens": defaults.max_tokens, **settings}
    api_base, api_key_env = settings.pop("api_base", None), settings.pop("api_key_env", None)
    if is_local_model(model):
        from clauseloop.engine.lm import LocalLM

        if api_base:
            raise ValueError(f"api_base is for LiteLLM models; {model!r} runs locally (drop api_base, or serve it)")
        return LocalLM(model.removeprefix(LOCAL_PREFIX), **settings)
    if "/" not in model:
        raise ValueError(
            f"unknown model {model!r}: give a model-store name ({', '.join(NAMED_MODELS)}), a local directory "
            "(optionally +ADAPTER_DIR), a LiteLLM string such as openai/gpt-4o-mini, or a role "
            f"({', '.join(ROLES)})"
        )
    import dspy

    if api_base:
        settings["api_base"] = api_base
    if api_key_env:
        if not os.environ.get(api_key_env):
            raise ValueError(f"{model!r} reads its API key from ${api_key_env}, which is not set; export it first")
        settings["api_key"] = os.environ[api_key_env]
    return dspy.LM(model, **settings)


def load_roles(
    path: str | Path | None = None,
    *,
    overrides: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> RolesConfig:
    """Roles from defaults < file (``path`` or ``$CLAUSELOOP_ROLES``) < environment < ``overrides`` (CLI flags)."""
    environ = os.environ if environ is None else environ
    roles = RolesConfig()
    path = path or environ.get("CLAUSELOOP_ROLES")
    if path:
        roles = _apply(roles, read_roles_file(path), source=str(path))
    roles = _apply(roles, _from_environ(environ), source="environment")
    flags = {name: {"model": model} for name, model in (overrides or {}).items() if model}
    return _apply(roles, flags, source="command line")


def read_roles_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"roles file {path} does not exist; see `clauseloop.engine.roles` for the format")
    if path.suffix == ".json":
        data = json.loads(path.read_text())
    elif path.suffix == ".toml":
        import tomllib

        data = tomllib.loads(path.read_text())
    else:
        raise ValueError(f"roles file {path} must be .toml or .json")
    return data.get("roles", data)


def _from_environ(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name in ROLES:
        prefix = f"CLAUSELOOP_{name.upper()}"
        for key, variable in (("model", prefix), ("api_base", f"{prefix}_API_BASE")):
            if environ.get(variable):
                found.setdefault(name, {})[key] = environ[variable]
    return found


def _apply(roles: RolesConfig, data: Mapping[str, Any], *, source: str) -> RolesConfig:
    unknown = set(data) - set(ROLES)
    if unknown:
        raise ValueError(f"{source}: unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
    updated = {}
    for name, settings in data.items():
        if isinstance(settings, str):
            settings = {"model": settings}
        valid = {item.name for item in fields(RoleConfig)}
        bad = set(settings) - valid
        if bad:
            raise ValueError(f"{source}: role {name!r} has unknown key(s) {sorted(bad)}; keys are {sorted(valid)}")
        updated[name] = replace(roles.role(name), **settings)
    return replace(roles, **updated)

