"""Section headings and the ``h:`` features the learned term models see."""

from clauseloop.data.records import Contract
from clauseloop.retrieval.chunking import ChunkConfig, chunk_contract
from clauseloop.retrieval.learned import passage_term_sets, passage_terms
from clauseloop.retrieval.sections import contract_headings, find_headings, passage_headings

CONTRACT = (
    "SUPPLY AGREEMENT\n"
    "ARTICLE XII.   CERTAIN RIGHTS OF THE BUYER.   "
    "12.1 Advisory Board. The Buyer may appoint one observer to the board of the Seller. "
    "12.2 Right of First Refusal.   (a) Before selling any Units to a third party, the Seller shall offer them to "
    "the Buyer on the same terms. (b) The Buyer shall have ten (10) days from the date of such notice to accept. "
    "(c) Units not accepted may be sold within one hundred and eighty days, and not thereafter.\n"
    "INSURANCE\n"
    "The Seller shall keep policies with reputable carriers. Certificates shall name the Buyer.\n"
    "Page 3 of 9 Supply Agreement\n"
)


def test_numbered_titles_and_upper_case_lines_are_headings():
    titles = [title for _, title in sorted(find_headings(CONTRACT).items())]
    assert titles[:1] == ["SUPPLY AGREEMENT"]
    for title in ("CERTAIN RIGHTS OF THE BUYER", "Advisory Board", "Right of First Refusal", "INSURANCE"):
        assert title in titles, titles
    # Sentences after a number are not headings: neither "(10) days" nor a page footer ("Page 3 of 9 Supply ...").
    assert not any("days" in t or "Supply Agreement" == t for t in titles), titles


def test_offsets_point_at_the_heading_in_the_contract():
    found = find_headings(CONTRACT[100:], offset=100)
    assert found, "the text after offset 100 has headings"
    for start, title in found.items():  # where the heading starts: its number, or the title itself
        assert CONTRACT.startswith(title, start) or CONTRACT[start:].split(maxsplit=1)[1].startswith(title)


def test_a_title_repeated_on_every_page_is_not_a_section():
    page = "ACME SERVICES AGREEMENT\nThe parties agree as follows and nothing else.\n"
    text = page * 3 + "7. Insurance. The supplier shall maintain insurance.\n"
    contract = Contract(id="c", title="c", text=text)
    passages = chunk_contract(contract, ChunkConfig(max_chars=60, overlap_chars=0))
    titles = [title for _, title in contract_headings(passages)]
    assert titles == ["Insurance"]


def test_a_table_of_contents_line_counts_once():
    # "7." and its title on lines of their own match both patterns; counted twice, the title and its body heading
    # reached MAX_REPEATS and the real section heading was dropped as a running header.
    text = ("Table of Contents\n\n7.\n\nPARTIES' WITHDRAWAL FROM THE FIELD\n\n8.\n\nINSURANCE\n\n"
            "7. PARTIES' WITHDRAWAL FROM THE FIELD.\n\n7.1. Each Party shall withdraw from the field of agreement.\n")
    assert list(find_headings(text).values()).count("PARTIES' WITHDRAWAL FROM THE FIELD") == 2
    passages = chunk_contract(Contract(id="c", title="c", text=text), ChunkConfig(max_chars=80, overlap_chars=30))
    withdraw = next(p for p in passages if p.text.startswith("7.1. Each"))
    assert passage_headings(passages)[passages.index(withdraw)] == "PARTIES' WITHDRAWAL FROM THE FIELD"


def test_each_passage_gets_the_last_heading_before_it():
    contract = Contract(id="c", title="c", text=CONTRACT)
    passages = chunk_contract(contract, ChunkConfig(max_chars=120, overlap_chars=40))
    headings = passage_headings(passages)
    by_text = {p.text: h for p, h in zip(passages, headings)}
    assert by_text[next(t for t in by_text if t.startswith("(c) Units"))] == "Right of First Refusal"
    assert by_text[next(t for t in by_text if t.startswith("INSURANCE\nThe Seller"))] == "INSURANCE"
    assert by_text[next(t for t in by_text if t.startswith("Certificates"))] == "INSURANCE"
    # Two contracts in one list: the second one's first passage does not inherit the first one's last heading.
    other = chunk_contract(Contract(id="d", title="d", text="No headings in this short text at all."))
    assert passage_headings(passages + other)[-1] == ""


def test_heading_words_are_separate_features():
    assert passage_terms("Certificates shall name the Buyer.", "INSURANCE") == (
        passage_terms("Certificates shall name the Buyer.") | {"h:insurance"}
    )
    contract = Contract(id="c", title="c", text=CONTRACT)
    passages = chunk_contract(contract, ChunkConfig(max_chars=120, overlap_chars=40))
    terms = passage_term_sets(passages)
    refusal = next(t for p, t in zip(passages, terms) if p.text.startswith("(c) Units"))
    assert {"h:right", "h:first", "h:refusal", "h:first_refusal"} <= refusal, sorted(refusal)
    assert "first" not in refusal  # the passage's own words do not say it
