"""Grounding: LM quotes become contract spans with exact offsets, or are dropped and counted."""

from __future__ import annotations

from clauseloop.program.grounding import ground, locate, parse_quotes

CONTRACT = (
    "1. TERM\nThis Agreement  shall commence on the Effective Date.\n"
    "12. GOVERNING LAW. This Agreement shall be governed by\nthe laws of the State of Ohio.\n"
    "13. NOTICES. The laws of the State of Ohio apply to notices too."
)


def test_parse_quotes_strips_markers_and_none():
    assert parse_quotes("NONE") == [] and parse_quotes("none.") == [] and parse_quotes(None) == []
    answer = '1. "This Agreement shall be governed by the laws of the State of Ohio."\n- NONE\n\n* Term'
    assert parse_quotes(answer) == ["This Agreement shall be governed by the laws of the State of Ohio.", "Term"]


def test_exact_and_whitespace_normalized_matches_have_exact_offsets():
    exact = locate("shall commence on the Effective Date.", CONTRACT)
    assert CONTRACT[exact.start : exact.end] == exact.text
    loose = locate("This Agreement shall be governed by the laws of the State of Ohio.", CONTRACT)
    assert loose is not None and CONTRACT[loose.start : loose.end] == loose.text
    assert "\n" in loose.text  # the contract's own line break is kept: returned text is contract text


def test_windows_are_preferred():
    quote = "the laws of the State of Ohio"
    anywhere = locate(quote, CONTRACT)
    notices = CONTRACT.index("13. NOTICES")
    in_window = locate(quote.replace("the laws", "The laws"), CONTRACT, windows=[(notices, len(CONTRACT))])
    assert in_window.start > notices > anywhere.start


def test_ground_drops_and_counts_hallucinations_and_dedupes():
    answer = "shall commence on the Effective Date.\nThe parties agree to arbitrate in Paris.\nshall commence on the Effective Date."
    located, dropped = ground(answer, CONTRACT)
    assert [s.text for s in located] == ["shall commence on the Effective Date."]
    assert dropped == 1


def test_a_quote_cut_by_the_token_budget_is_completed_to_its_sentence_end():
    cut = "GOVERNING LAW. This Agreement shall be gov"
    (span,), dropped = ground(cut, CONTRACT, answer_was_cut=True)
    assert dropped == 0
    assert span.text == CONTRACT[span.start : span.end]
    assert span.text.endswith("the State of Ohio.")
    (uncut,), _ = ground(cut, CONTRACT)
    assert uncut.text == cut  # without the flag, the quote is taken as it is
    whole, _ = ground("shall commence on the Effective Date.", CONTRACT, answer_was_cut=True)
    assert whole[0].text == "shall commence on the Effective Date."  # a whole sentence is not extended
