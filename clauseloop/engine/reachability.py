"""When a role's LM cannot be reached: one clear error naming the role, the model and its URL.

A remote teacher, student or judge — any LiteLLM string, such as ``openai/NAME`` at a vLLM or ``clauseloop
serve-lm`` URL — can be down, refuse the connection or time out in the middle of a long run. Every long run in
clauseloop keeps what it finished (the SFT dataset is append-only and marks each finished unit; an optimizer run
caches every LM answer), so the error only has to say which role failed, where, and that a re-run continues:
:func:`role_errors` turns DSPy's transport, timeout and server errors into :class:`RoleUnavailable` saying that.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from dspy.utils.exceptions import LMServerError, LMTimeoutError, LMTransportError

UNREACHABLE = (LMTransportError, LMTimeoutError, LMServerError, ConnectionError, TimeoutError)
ROWS_KEPT = "Rows written so far are kept"


class RoleUnavailable(RuntimeError):
    """A role's LM could not be reached; what the run finished so far is kept."""


def lm_address(lm: Any) -> str:
    """Where an LM is served: its ``api_base`` URL, or "in this process" for a local model."""
    kwargs = getattr(lm, "kwargs", {}) or {}
    return kwargs.get("api_base") or kwargs.get("base_url") or "in this process"


def unavailable_message(role: str, lm: Any, error: BaseException, kept: str = ROWS_KEPT) -> str:
    return (
        f"the {role} LM {getattr(lm, 'model', lm)!r} at {lm_address(lm)} did not answer ({type(error).__name__}: "
        f"{str(error)[:200]}). {kept}; start the server (or fix --{role}) and re-run the same command to continue."
    )


def failing_role(error: BaseException, lms: Mapping[str, Any]) -> str:
    """Which of ``lms`` (role → LM) an error came from: the one whose model it names, else the first remote one."""
    text = str(error)
    named = [role for role, lm in lms.items() if str(getattr(lm, "model", "")) in text]
    remote = [role for role, lm in lms.items() if lm_address(lm) != "in this process"]
    return (named or remote or list(lms))[0]


@contextmanager
def role_errors(lms: Mapping[str, Any], kept: str = ROWS_KEPT) -> Iterator[None]:
    """Re-raise an unreachable-LM error of any of ``lms`` (role → LM) as :class:`RoleUnavailable`."""
    try:
        yield
    except UNREACHABLE as error:
        role = failing_role(error, lms)
        raise RoleUnavailable(unavailable_message(role, lms[role], error, kept)) from error
