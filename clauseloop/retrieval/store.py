"""Index directories: ``manifest.json`` + ``passages.jsonl`` + ``embeddings.safetensors``; no pickle.

The manifest records the format version, the index config (embedder, chunking, search settings), a content hash
and passage count per contract, and the size and sha256 of every file. It is written last into a temporary
directory that is then renamed into place, so a reader sees a complete index or none; anything missing, truncated
or inconsistent is refused with a message that says to rebuild. faiss and BM25 are rebuilt on load (seconds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable

from clauseloop.data.records import Contract
from clauseloop.retrieval.chunking import Passage
from clauseloop.retrieval.embedding import Embedder
from clauseloop.retrieval.index import IndexConfig, PassageIndex

logger = logging.getLogger(__name__)

FORMAT = "clauseloop-passage-index"
VERSION = 1
MANIFEST = "manifest.json"
PASSAGES = "passages.jsonl"
EMBEDDINGS = "embeddings.safetensors"
INDEX_FILES = (MANIFEST, PASSAGES, EMBEDDINGS)


class IndexStoreError(RuntimeError):
    """An index directory that cannot be used; the message says how to fix it (usually: rebuild)."""


def _rebuild_hint(directory: Path) -> str:
    return f"rebuild it with `clauseloop index build DATA --out {directory}`"


def _file_entry(path: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("clauseloop", "faiss-cpu", "bm25s", "sentence-transformers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def save_index(index: PassageIndex, directory: str | Path) -> Path:
    """Write ``index`` to ``directory`` atomically (replacing an older index there)."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    foreign = [p.name for p in directory.iterdir() if p.name not in INDEX_FILES] if directory.is_dir() else []
    if foreign or (directory.exists() and not directory.is_dir()):
        raise IndexStoreError(f"{directory} exists and is not an index directory; choose an empty or new --out")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        with (tmp / PASSAGES).open("w", encoding="utf-8") as handle:
            for passage in index.passages:
                handle.write(json.dumps(passage.to_dict(), ensure_ascii=False) + "\n")
        save_file({"embeddings": index.embeddings}, str(tmp / EMBEDDINGS))
        (tmp / MANIFEST).write_text(json.dumps(_manifest(index, tmp), indent=2))
        _swap_into_place(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _manifest(index: PassageIndex, tmp: Path) -> dict:
    counts = {cid: end - start for cid, (start, end) in index.ranges.items()}
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": index.config.to_dict(),
        "embedder": index.config.embedder,
        "dim": int(index.embeddings.shape[1]),
        "contracts": {cid: {"hash": digest, "passages": counts.get(cid, 0)} for cid, digest in index.hashes.items()},
        "counts": {"contracts": len(index.hashes), "passages": len(index.passages)},
        "files": {name: _file_entry(tmp / name) for name in (PASSAGES, EMBEDDINGS)},
        "build": vars(index.build_stats),
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _swap_into_place(tmp: Path, directory: Path) -> None:
    """Rename the finished ``tmp`` over ``directory``; the old index is moved aside first, then deleted."""
    old = None
    if directory.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        os.rename(directory, old / "index")
    try:
        os.rename(tmp, directory)
    except OSError:
        if old is not None:
            os.rename(old / "index", directory)  # put the previous index back: never leave nothing behind
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def read_manifest(directory: str | Path) -> dict:
    """The manifest of a complete index, or :class:`IndexStoreError` saying what is wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise IndexStoreError(f"{directory}: no such index directory; build one with `clauseloop index build`")
    path = directory / MANIFEST
    if not path.exists():
        raise IndexStoreError(
            f"{directory}: no {MANIFEST} (an interrupted build or not an index); {_rebuild_hint(directory)}"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise IndexStoreError(f"{path} is not valid JSON ({error}); {_rebuild_hint(directory)}") from error
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise IndexStoreError(
            f"{directory}: index format {manifest.get('format')!r} v{manifest.get('version')} is not "
            f"{FORMAT} v{VERSION}; {_rebuild_hint(directory)}"
        )
    for name, expected in manifest.get("files", {}).items():
        file = directory / name
        if not file.exists() or _file_entry(file) != expected:
            state = "is missing" if not file.exists() else "does not match the manifest (truncated or changed)"
            raise IndexStoreError(f"{file} {state}; {_rebuild_hint(directory)}")
    return manifest


def load_index(directory: str | Path, *, embedder: Embedder | None = None) -> PassageIndex:
    """Load a saved index (verified against its manifest)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    manifest = read_manifest(directory)
    with (directory / PASSAGES).open(encoding="utf-8") as handle:
        passages = [Passage(**json.loads(line)) for line in handle if line.strip()]
    embeddings = load_file(str(directory / EMBEDDINGS))["embeddings"]
    counts = manifest["counts"]
    if len(passages) != counts["passages"] or embeddings.shape != (counts["passages"], manifest["dim"]):
        raise IndexStoreError(
            f"{directory}: {len(passages)} passages and embeddings {embeddings.shape} disagree with the manifest "
            f"({counts['passages']} passages of dimension {manifest['dim']}); {_rebuild_hint(directory)}"
        )
    hashes = {cid: entry["hash"] for cid, entry in manifest["contracts"].items()}
    index = PassageIndex(IndexConfig.from_dict(manifest["config"]), passages, embeddings, hashes)
    if embedder is not None:
        index.embedder = embedder
    return index


def build_index_dir(
    contracts: Iterable[Contract],
    directory: str | Path,
    config: IndexConfig = IndexConfig(),
    *,
    embedder: Embedder | None = None,
    progress: bool = False,
) -> PassageIndex:
    """Build (or incrementally update) the index in ``directory`` and save it atomically.

    An existing valid index with the same embedder and chunking lends its embeddings for unchanged contracts;
    one that is unreadable or differently configured is simply rebuilt from scratch.
    """
    previous = None
    if (Path(directory) / MANIFEST).exists():
        try:
            previous = load_index(directory, embedder=embedder)
        except IndexStoreError as error:
            logger.warning("ignoring the existing index (%s); rebuilding everything", error)
        if previous is not None and previous.config.identity() != config.identity():
            logger.info("embedder or chunking changed: rebuilding every contract")
            previous = None
    index = PassageIndex.build(contracts, config, embedder=embedder, previous=previous, progress=progress)
    save_index(index, directory)
    return index

