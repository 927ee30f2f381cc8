"""The feedback record: what a reviewer said about the spans the system showed for one contract and category.

A record names the contract by the hash of its text (:func:`contract_hash`, the id the server gives a contract),
the category (or free question) asked, the spans shown, the model version that produced them, a vote (``up`` or
``down``), and optionally the reviewer's corrected spans and a comment, the time (ISO 8601, UTC) and the user.
``flags`` mark records the store keeps but could not match (an unknown contract or model version, a category
outside CUAD's 41): the alignment stage decides what to do with them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Mapping

VOTES = ("up", "down")
MAX_TEXT_CHARS = 20_000  # comment, question and span texts
MAX_SPANS = 100
FLAG_UNKNOWN_CONTRACT = "unknown_contract"
FLAG_UNKNOWN_MODEL = "unknown_model_version"
FLAG_UNKNOWN_CATEGORY = "unknown_category"


class FeedbackError(ValueError):
    """A feedback record (or file of them) that cannot be stored; the message names the field and the fix."""


def contract_hash(text: str) -> str:
    """The stable id of a contract: the first 16 hex digits of the SHA-256 of its UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class FeedbackSpan:
    """A span shown to (or corrected by) the reviewer: its text and, when known, its offsets in the contract."""

    text: str
    start: int | None = None
    end: int | None = None

    @classmethod
    def coerce(cls, value: Any, where: str) -> "FeedbackSpan":
        if isinstance(value, FeedbackSpan):
            span = value
        elif isinstance(value, Mapping):
            unknown = set(value) - {"text", "start", "end", "confidence"}
            if unknown:
                raise FeedbackError(f"{where}: unknown key(s) {sorted(unknown)}; a span has text, start, end")
            span = cls(value.get("text"), value.get("start"), value.get("end"))
        else:
            raise FeedbackError(f"{where}: a span is an object {{text, start, end}}, got {type(value).__name__}")
        span.check(where)
        return span

    def check(self, where: str) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise FeedbackError(f"{where}.text: a span needs non-empty text")
        if len(self.text) > MAX_TEXT_CHARS:
            raise FeedbackError(f"{where}.text: {len(self.text)} characters; at most {MAX_TEXT_CHARS}")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise FeedbackError(f"{where}.{name}: must be a non-negative integer or null, got {value!r}")
        if (self.start is None) != (self.end is None):
            raise FeedbackError(f"{where}: give both start and end, or neither")
        if self.start is not None and self.end < self.start:
            raise FeedbackError(f"{where}: end ({self.end}) is before start ({self.start})")


@dataclass(frozen=True)
class FeedbackRecord:
    """One piece of feedback; ``id`` is set by the store. Build from JSON with :meth:`from_dict`."""

    contract_hash: str
    vote: str
    spans: tuple[FeedbackSpan, ...] = ()
    category: str | None = None
    question: str | None = None
    model_version: str = ""
    corrected_spans: tuple[FeedbackSpan, ...] | None = None
    comment: str | None = None
    user: str | None = None
    time: str = field(default_factory=now_iso)
    flags: tuple[str, ...] = ()
    id: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "feedback") -> "FeedbackRecord":
        """A validated record from a JSON object (spans as dicts); unknown keys are refused, not ignored."""
        if not isinstance(data, Mapping):
            raise FeedbackError(f"{where}: a feedback record is a JSON object, got {type(data).__name__}")
        known = {item for item in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise FeedbackError(f"{where}: unknown field(s) {sorted(unknown)}; fields are {sorted(known)}")
        if "contract_hash" not in data or "vote" not in data:
            raise FeedbackError(f"{where}: contract_hash and vote are required")
        values = dict(data)
        values["spans"] = _spans(values.get("spans") or (), f"{where}.spans")
        if values.get("corrected_spans") is not None:
            values["corrected_spans"] = _spans(values["corrected_spans"], f"{where}.corrected_spans")
        if values.get("flags") is not None:
            values["flags"] = tuple(values["flags"]) if isinstance(values["flags"], (list, tuple)) else values["flags"]
        else:
            values.pop("flags", None)
        if values.get("time") is None:
            values.pop("time", None)
        record = cls(**values)
        record.check(where)
        return record

    def check(self, where: str = "feedback") -> None:
        """Raise :class:`FeedbackError` naming the first bad field."""
        if not isinstance(self.contract_hash, str) or not self.contract_hash.strip() or len(self.contract_hash) > 128:
            raise FeedbackError(f"{where}.contract_hash: give the contract's id (its content hash, a short string)")
        if self.vote not in VOTES:
            raise FeedbackError(f"{where}.vote: must be 'up' or 'down', got {self.vote!r}")
        if not (_text(self.category) or _text(self.question)):
            raise FeedbackError(f"{where}: give the category or the question the spans answered")
        for name in ("category", "question", "comment", "user", "model_version"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise FeedbackError(f"{where}.{name}: must be a string, got {type(value).__name__}")
            if value is not None and len(value) > MAX_TEXT_CHARS:
                raise FeedbackError(f"{where}.{name}: {len(value)} characters; at most {MAX_TEXT_CHARS}")
        for name in ("spans", "corrected_spans"):
            spans = getattr(self, name)
            if spans is not None and len(spans) > MAX_SPANS:
                raise FeedbackError(f"{where}.{name}: {len(spans)} spans; at most {MAX_SPANS}")
            for index, span in enumerate(spans or ()):
                span.check(f"{where}.{name}[{index}]")
        if not isinstance(self.flags, tuple) or not all(isinstance(flag, str) for flag in self.flags):
            raise FeedbackError(f"{where}.flags: a list of strings")
        try:
            datetime.fromisoformat(self.time)
        except (TypeError, ValueError):
            raise FeedbackError(
                f"{where}.time: an ISO 8601 time such as 2025-01-31T12:00:00+00:00, got {self.time!r}"
            ) from None

    def with_flags(self, *flags: str) -> "FeedbackRecord":
        return replace(self, flags=tuple(sorted(set(self.flags) | set(flags))))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flags"] = list(self.flags)
        return data

    def digest(self) -> str:
        """What makes two records exact duplicates: every field but the store's ``id`` and ``flags``."""
        content = {key: value for key, value in self.to_dict().items() if key not in ("id", "flags")}
        return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _spans(values: Any, where: str) -> tuple[FeedbackSpan, ...]:
    if not isinstance(values, (list, tuple)):
        raise FeedbackError(f"{where}: a list of spans {{text, start, end}}, got {type(values).__name__}")
    return tuple(FeedbackSpan.coerce(value, f"{where}[{index}]") for index, value in enumerate(values))


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
