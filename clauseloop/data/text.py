"""Is it a text contract? The one check shared by the server's uploads and the command line's contract files.

An empty file, a binary one (NUL bytes, mostly control characters), a PDF or a file that is not UTF-8 is refused
with :class:`NotATextContract`, whose message starts "not a text contract:" and says what to give instead.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

MAX_CONTROL_SHARE = 0.01  # a text with more control characters than this is binary


class NotATextContract(ValueError):
    """An upload or file that is empty, binary or not UTF-8; the message says what to send instead."""


def contract_text(data: bytes | str) -> str:
    """The text of an upload, a JSON field or a file's bytes, or :class:`NotATextContract` naming the problem."""
    if isinstance(data, bytes):
        if data.startswith(b"%PDF"):
            raise NotATextContract("not a text contract: this is a PDF; convert it to text (e.g. pdftotext) first")
        if b"\0" in data:
            raise NotATextContract("not a text contract: the file is binary; give a UTF-8 .txt file")
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise NotATextContract(
                f"not a text contract: not UTF-8 at byte {error.start}; save the file as UTF-8 text"
            ) from None
    if not data.strip():
        raise NotATextContract("not a text contract: it is empty; paste or upload the contract's text")
    controls = sum(1 for c in data if unicodedata.category(c) == "Cc" and c not in "\n\r\t\f\v")
    if controls > MAX_CONTROL_SHARE * len(data):
        raise NotATextContract("not a text contract: it is mostly control characters (binary); give UTF-8 text")
    return data


def read_contract_file(path: str | Path) -> str:
    """The text of a contract file; :class:`NotATextContract` (naming the file) for an empty or binary one."""
    path = Path(path)
    try:
        return contract_text(path.read_bytes())
    except NotATextContract as error:
        raise NotATextContract(f"{error} ({path})") from None
