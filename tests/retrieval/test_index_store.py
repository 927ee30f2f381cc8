"""Index bookkeeping: incremental rebuilds, removal, persistence and its failure modes (tiny encoder)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from clauseloop.retrieval.chunking import ChunkConfig, chunk_contract
from clauseloop.retrieval.index import IndexConfig, PassageIndex
from clauseloop.retrieval.store import EMBEDDINGS, MANIFEST, PASSAGES, IndexStoreError, build_index_dir, load_index

CONFIG = IndexConfig(embedder="bag-of-words-test", chunking=ChunkConfig(max_chars=120, overlap_chars=40))


def _passages_of(index, cid):
    start, end = index.ranges[cid]
    return index.passages[start:end], index.embeddings[start:end]


def test_incremental_rebuild_embeds_only_new_and_changed_contracts(tmp_path, bow_embedder, small_contracts):
    directory = tmp_path / "index"
    first = build_index_dir(small_contracts, directory, CONFIG, embedder=bow_embedder)
    assert bow_embedder.texts_encoded == len(first) and first.build_stats.embedded_contracts == 3

    changed = replace(small_contracts[1], text=small_contracts[1].text + "\n\nAudit rights apply annually.")
    added = replace(small_contracts[0], id="C9", title="C9")
    bow_embedder.model.seen.clear()
    second = build_index_dir([small_contracts[0], changed, small_contracts[2], added], directory, CONFIG,
                             embedder=bow_embedder)
    expected = [p.text for p in chunk_contract(changed, CONFIG.chunking) + chunk_contract(added, CONFIG.chunking)]
    assert bow_embedder.model.seen == expected  # exactly the changed and the new contract's passages
    assert (second.build_stats.reused_contracts, second.build_stats.embedded_contracts) == (2, 2)
    old_passages, old_vectors = _passages_of(first, "C0")
    new_passages, new_vectors = _passages_of(load_index(directory), "C0")
    assert new_passages == old_passages and np.array_equal(new_vectors, old_vectors)


def test_removing_a_contract_removes_its_passages(tmp_path, bow_embedder, small_contracts):
    directory = tmp_path / "index"
    build_index_dir(small_contracts, directory, CONFIG, embedder=bow_embedder)
    encoded = bow_embedder.texts_encoded
    index = build_index_dir(small_contracts[:2], directory, CONFIG, embedder=bow_embedder)
    assert bow_embedder.texts_encoded == encoded and index.build_stats.removed_contracts == 1
    reloaded = load_index(directory)
    assert "C2" not in reloaded.ranges and all(p.contract_id != "C2" for p in reloaded.passages)
    assert json.loads((directory / MANIFEST).read_text())["counts"]["contracts"] == 2
    with pytest.raises(KeyError, match="not in this index"):
        reloaded.search("governed", 2, contract_id="C2", mode="lexical")


def test_changed_chunking_rebuilds_everything(tmp_path, bow_embedder, small_contracts):
    directory = tmp_path / "index"
    build_index_dir(small_contracts, directory, CONFIG, embedder=bow_embedder)
    before = bow_embedder.texts_encoded
    other = replace(CONFIG, chunking=ChunkConfig(max_chars=200, overlap_chars=0))
    index = build_index_dir(small_contracts, directory, other, embedder=bow_embedder)
    assert bow_embedder.texts_encoded - before == len(index) and index.build_stats.reused_contracts == 0


def test_search_stays_inside_the_requested_contract(bow_embedder, small_contracts):
    index = PassageIndex.build(small_contracts, CONFIG, embedder=bow_embedder)
    for mode in ("dense", "lexical", "hybrid"):
        hits = index.search("assign prior written consent", 3, contract_id="C1", mode=mode)
        assert len(hits) == 3 and all(hit.contract_id == "C1" for hit in hits)
        assert "assign" in hits[0].passage.text
        assert hits == sorted(hits, key=lambda hit: -hit.score)
    everywhere = index.search("royalty Net Sales", 6, mode="hybrid")
    assert len({hit.contract_id for hit in everywhere}) >= 2  # unrestricted search spans contracts


@pytest.mark.parametrize("damage", ["truncate-embeddings", "drop-passages", "no-manifest", "bad-manifest"])
def test_damaged_index_gives_a_clear_error(tmp_path, bow_embedder, small_contracts, damage):
    directory = tmp_path / "index"
    build_index_dir(small_contracts, directory, CONFIG, embedder=bow_embedder)
    if damage == "truncate-embeddings":
        data = (directory / EMBEDDINGS).read_bytes()
        (directory / EMBEDDINGS).write_bytes(data[: len(data) // 2])
    elif damage == "drop-passages":
        lines = (directory / PASSAGES).read_text().splitlines(keepends=True)
        (directory / PASSAGES).write_text("".join(lines[:-1]))
    elif damage == "no-manifest":  # what an interrupted write would look like
        (directory / MANIFEST).unlink()
    else:
        (directory / MANIFEST).write_text('{"format": ')
    with pytest.raises(IndexStoreError, match="rebuild"):
        load_index(directory)
    # Building again over a damaged index recovers by rebuilding from scratch.
    build_index_dir(small_contracts, directory, CONFIG, embedder=bow_embedder)
    assert len(load_index(directory).ranges) == 3


def test_writes_are_atomic_and_refuse_foreign_directories(tmp_path, bow_embedder, small_contracts):
    directory = tmp_path / "index"
    build_index_dir(small_contracts, directory, CONFIG, embedder=bow_embedder)
    build_index_dir(small_contracts[:1], directory, CONFIG, embedder=bow_embedder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]  # no temp or old copies left behind
    assert sorted(p.name for p in directory.iterdir()) == sorted([MANIFEST, PASSAGES, EMBEDDINGS])
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    with pytest.raises(IndexStoreError, match="not an index directory"):
        build_index_dir(small_contracts, foreign, CONFIG, embedder=bow_embedder)
    with pytest.raises(IndexStoreError, match="no such index directory"):
        load_index(tmp_path / "missing")


def test_embedder_must_match_the_config(bow_embedder, small_contracts):
    with pytest.raises(ValueError, match="does not match"):
        PassageIndex.build(small_contracts, IndexConfig(), embedder=bow_embedder)
