"""Atomic file writes: a reader (or a run killed mid-write) sees the old file or the new one, never half of one.

Every artifact the stages write — saved programs, manifests, dataset state — goes through :func:`atomic_path`: the
content is written to a temporary file in the same directory, then moved over the target with ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SHARED_FILE_MODE = 0o644  # temp files are created owner-only; artifacts are meant to be read by others


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; moved into place when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, SHARED_FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, payload: Any, *, indent: int | None = 2) -> Path:
    """``payload`` as strict JSON (no NaN) at ``path``, written atomically."""
    with atomic_path(path) as temporary:
        text = json.dumps(payload, indent=indent, ensure_ascii=False, allow_nan=False)
        temporary.write_text(text + "\n", encoding="utf-8")
    return Path(path)
