import pytest

from clauseloop.data import Contract
from clauseloop.retrieval.chunking import ChunkConfig, chunk_contract, chunk_spans, split_units

CONFIGS = [ChunkConfig(), ChunkConfig(max_chars=200, overlap_chars=50), ChunkConfig(max_chars=100, overlap_chars=0)]


def _check(contract: Contract, config: ChunkConfig) -> None:
    passages = chunk_contract(contract, config)
    covered = set()
    for position, passage in enumerate(passages):
        assert contract.text[passage.start : passage.end] == passage.text
        assert 0 < len(passage.text) <= config.max_chars
        assert passage.text == passage.text.strip()
        assert passage.position == position and passage.contract_id == contract.id
        covered.update(range(passage.start, passage.end))
    # Nothing is lost: every non-blank character lies in some passage.
    assert all(i in covered for i, ch in enumerate(contract.text) if not ch.isspace())
    starts = [p.start for p in passages]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


@pytest.mark.parametrize("config", CONFIGS, ids=["600-300", "200-50", "100-0"])
def test_offsets_round_trip_on_demo_contracts(demo_dataset, config):
    for contract in demo_dataset.contracts.values():
        _check(contract, config)


def test_run_on_text_and_giant_words_are_cut_within_limits():
    run_on = " ".join(f"word{n}" for n in range(600))  # no sentence boundary for ~5,000 characters
    giant = "x" * 1500  # no space at all: hard cuts
    contract = Contract("c", "c", f"  Heading\n{run_on}\n\n{giant}.  End of text.  ")
    for config in CONFIGS:
        _check(contract, config)


def test_neighbours_overlap_only_when_asked():
    text = " ".join(f"Clause number {n} says something specific." for n in range(60))
    with_overlap = chunk_spans(text, ChunkConfig(max_chars=200, overlap_chars=100))
    without = chunk_spans(text, ChunkConfig(max_chars=200, overlap_chars=0))
    assert any(b[0] < a[1] for a, b in zip(with_overlap, with_overlap[1:]))
    assert all(b[0] >= a[1] for a, b in zip(without, without[1:]))
    assert len(with_overlap) > len(without)


def test_units_split_at_sentences_lines_and_wide_gaps():
    text = "First sentence. Second one; Third, e.g. not split\n\nfourth   5.1 Fifth"
    units = [text[s:e] for s, e in split_units(text)]
    assert units == ["First sentence.", "Second one;", "Third, e.g. not split", "fourth", "5.1 Fifth"]


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="overlap_chars"):
        ChunkConfig(max_chars=100, overlap_chars=100)
    with pytest.raises(ValueError, match="max_chars"):
        ChunkConfig(max_chars=5, overlap_chars=0)


def test_empty_and_blank_contracts_have_no_passages():
    assert chunk_contract(Contract("e", "e", "")) == []
    assert chunk_contract(Contract("b", "b", " \n\n  ")) == []
