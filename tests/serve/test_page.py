"""The review page in a real browser: Playwright drives Debian's chromium against a real `clauseloop serve`.

Paste a demo contract, run a (small) review with the untrained SmolLM2, see a highlight, send feedback and find it
in the store; and a contract full of HTML is shown as text. Screenshots land in pytest's tmp dir.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.real_model]
CHROMIUM_PATHS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser")
HOSTILE = (
    "SERVICES AGREEMENT <b>bold</b>\n"
    "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">\n"
    "This Agreement is governed by the laws of the State of New York & <i>nothing</i> else.\n"
)


def chromium_path() -> str | None:
    found = [path for path in CHROMIUM_PATHS if Path(path).is_file()]  # the real binary skips a noisy wrapper
    return found[0] if found else shutil.which("chromium")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip extra `test`)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium: `apt-get install chromium` (scripts/setup.sh does it as root)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


SELECT_JS = """([from, to]) => {
    const walker = document.createTreeWalker(document.querySelector('#contract'), NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    let seen = 0;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const next = seen + node.length;
        if (seen <= from && from <= next) range.setStart(node, from - seen);
        if (seen <= to && to <= next) { range.setEnd(node, to - seen); break; }
        seen = next;
    }
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
}"""


def select_text(page, start: int, end: int) -> None:
    """Select characters [start, end) of the contract view, whatever highlights split them."""
    page.evaluate(SELECT_JS, [start, end])


def review(page, text: str, categories: str) -> None:
    page.goto("/")
    page.fill("#contract-text", text)
    page.fill("#categories", categories)
    page.click("#review")
    page.wait_for_function("document.querySelector('#status').textContent.includes(' in ')", timeout=240_000)


def test_review_highlight_and_feedback_reach_the_store(page, server, short_contract, tmp_path):
    review(page, short_contract.text, "Parties, Governing Law")
    assert page.locator("#progress").get_attribute("value") == "2"
    marks = page.locator("#contract mark.clause")
    assert marks.count() >= 1, "the review found no clause to highlight"
    assert page.locator("#contract").inner_text().replace("\r", "").strip() == short_contract.text.strip()
    counted = page.locator("#category-list li:not(.empty)").first
    category = counted.get_attribute("data-category")
    counted.click()  # jump to the category's first clause: the panel opens on it
    assert page.locator("#clause-category").inner_text() == category
    select_text(page, 0, 12)  # as a reviewer would drag over the contract's first words, across the highlight
    page.click("#use-selection")
    page.fill("#comment", "the parties are named in the preamble <b>here</b>")
    page.fill("#user", "browser-test")
    page.click("#send-feedback")
    page.wait_for_function("document.querySelector('#feedback-status').textContent.includes('saved')")
    page.screenshot(path=tmp_path / "review.png", full_page=True)
    record_id = int(page.locator("#feedback-status").inner_text().split("#")[1].split()[0])
    stored = server.app.state.services.feedback.get(record_id)
    assert stored.vote == "down" and stored.category == category and stored.user == "browser-test"
    assert stored.corrected_spans[0].text == short_contract.text[:12] and stored.corrected_spans[0].start == 0
    assert stored.model_version.startswith("smollm2-135m-instruct@") and stored.flags == ()
    assert (tmp_path / "review.png").stat().st_size > 10_000


def test_html_in_a_contract_is_shown_as_text(page, tmp_path):
    review(page, HOSTILE, "Governing Law")
    view = page.locator("#contract")
    assert "<script>window.__pwned = 1</script>" in view.inner_text()
    assert "<b>bold</b>" in view.inner_text()
    assert view.locator("script, img, b, i").count() == 0
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=tmp_path / "escaped.png")


def test_the_reports_page_shows_the_model_and_the_evaluation_tables(page, tmp_path):
    page.goto("/")
    page.click("a[href='/reports']")
    page.wait_for_selector("#reports article.report table")
    assert "student" in page.locator("#model-info").inner_text()
    qa = page.locator("#reports article.report[data-report='qa']")
    header = qa.locator("table").first.locator("th").all_inner_texts()
    assert header[:3] == ["evaluation", "AUPR", "P@80R"]
    assert qa.locator("tbody tr").count() >= 3 and "[" in qa.locator("tbody td.num").first.inner_text()
    page.screenshot(path=tmp_path / "reports.png", full_page=True)
