"""Calling a teacher (or judge) LM while building data: clear errors when it is unreachable.

A remote teacher — any LiteLLM string, such as ``openai/NAME`` at a vLLM or ``clauseloop serve-lm`` URL — can be
down, refuse the connection or time out in the middle of a build. The builders keep every row written so far
(the dataset is append-only and marks each finished unit), so the error only has to say which role and which URL
failed and that a re-run continues; :func:`role_errors` turns DSPy's LM errors into :class:`TeacherUnavailable`
with that message.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from dspy.utils.exceptions import LMServerError, LMTimeoutError, LMTransportError

UNREACHABLE = (LMTransportError, LMTimeoutError, LMServerError, ConnectionError, TimeoutError)


class TeacherUnavailable(RuntimeError):
    """The teacher or judge LM could not be reached; rows built so far are kept."""


def lm_address(lm: Any) -> str:
    """Where an LM is served: its ``api_base`` URL, or "in this process" for a local model."""
    kwargs = getattr(lm, "kwargs", {}) or {}
    return kwargs.get("api_base") or kwargs.get("base_url") or "in this process"


@contextmanager
def role_errors(lm: Any, role: str = "teacher") -> Iterator[None]:
    """Re-raise an unreachable-LM error as :class:`TeacherUnavailable` naming the role, model and URL."""
    try:
        yield
    except UNREACHABLE as error:
        raise TeacherUnavailable(
            f"the {role} LM {getattr(lm, 'model', lm)!r} at {lm_address(lm)} did not answer ({type(error).__name__}: "
            f"{str(error)[:200]}). Rows written so far are kept; start the server (or fix --{role}) and re-run the "
            "same command to continue."
        ) from error
