"""What every benchmark script does at the end: write the JSON result and its Markdown next to it, print the latter."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(out: Path, result: dict, markdown: str) -> None:
    """``out`` (JSON) and ``out`` with ``.md`` (the table the README quotes); prints the Markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown)
    print(markdown)


def with_ci(overall: dict, key: str) -> str:
    """A metric of a report's ``overall`` block with its 95 % CI, as the result tables show it."""
    value, (low, high) = overall.get(key), overall.get("ci", {}).get(key, [None, None])
    if value is None:
        return "–"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{value:.3f}"
