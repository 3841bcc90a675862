"""A real browser (Debian's chromium driven by Playwright) on the launched app.

Screenshots go to $UI_SCREENSHOTS (the README's come from `UI_SCREENSHOTS=docs/ui`), else to
the test's temp folder.
"""

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture()
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("UI_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_page(browser, url):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.locator("#instruction textarea").wait_for()
    return page


def ask(page, instruction):
    page.locator("#instruction textarea").fill(instruction)
    page.locator("#send").click()


def answer(page, text):
    """The chat's answer message (step messages may quote the same text)."""
    return page.locator("#chat").get_by_label(f"bot's message: {text}", exact=True)


def test_chat_then_bricks_search(browser, served, shots):
    page = open_page(browser, served[0])
    ask(page, "Reverse the words, then uppercase: hello big world")
    chat = page.locator("#chat")
    answer(page, "WORLD BIG HELLO").wait_for()
    assert chat.get_by_text("Step 1: Reverse the words → reverse_words").is_visible()
    assert chat.get_by_text("Step 2: uppercase → uppercase").is_visible()
    note = chat.get_by_text(re.compile(r"single brick uppercase \(score \d\.\d\d\)"))  # inside the step: hits, mode, weights, time
    page.wait_for_timeout(1000)  # finished steps fold themselves; open the last one after that
    if not note.is_visible():
        chat.get_by_text("Step 2: uppercase → uppercase").click()
    note.wait_for()
    page.wait_for_timeout(500)  # let the opening animation end before the screenshot
    page.screenshot(path=str(shots / "chat.png"))
    assert note.is_visible()

    page.get_by_role("tab", name="Bricks").click()
    page.locator("#bricks-table").get_by_text("reverse_words", exact=True).wait_for()
    search = page.locator("#search textarea")
    search.fill("make it all caps")
    search.press("Enter")
    page.locator("#hits").get_by_text("uppercase", exact=True).wait_for()
    page.screenshot(path=str(shots / "bricks.png"))

    page.get_by_role("tab", name="Analysis").click()
    page.locator("img[src*='mixed_batch']").wait_for()
    assert page.locator("img[src*='sparsity']").count() == 1
    page.context.close()


def test_two_browser_sessions_at_once_get_their_own_answers(browser, served):
    from playwright.sync_api import expect

    first, second = open_page(browser, served[0]), open_page(browser, served[0])
    first.get_by_text("Uppercase: big cat", exact=True).click()  # an example fills the instruction box
    expect(first.locator("#instruction textarea")).to_have_value("Uppercase: big cat", timeout=TIMEOUT_MS)
    first.locator("#send").click()
    ask(second, "Give the plural: goose")
    answer(first, "BIG CAT").wait_for()
    answer(second, "geese").wait_for()
    assert first.locator("#chat").get_by_text("geese").count() == 0
    assert second.locator("#chat").get_by_text("BIG CAT").count() == 0
    first.locator("#clear").click()
    answer(first, "BIG CAT").wait_for(state="detached")
    assert answer(second, "geese").is_visible()
    for page in (first, second):
        page.context.close()
