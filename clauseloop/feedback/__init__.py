"""Human feedback on the system's answers: the record and its SQLite store (used by the server and alignment)."""

from clauseloop.feedback.records import (
    FLAG_UNKNOWN_CATEGORY,
    FLAG_UNKNOWN_CONTRACT,
    FLAG_UNKNOWN_MODEL,
    VOTES,
    FeedbackError,
    FeedbackRecord,
    FeedbackSpan,
    contract_hash,
)
from clauseloop.feedback.store import FeedbackStore, ImportResult

__all__ = [
    "FLAG_UNKNOWN_CATEGORY", "FLAG_UNKNOWN_CONTRACT", "FLAG_UNKNOWN_MODEL", "VOTES", "FeedbackError",
    "FeedbackRecord", "FeedbackSpan", "contract_hash", "FeedbackStore", "ImportResult",
]
