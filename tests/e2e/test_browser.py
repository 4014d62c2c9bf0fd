"""The web page in a real browser: headless Chromium (the system's) driven by Playwright.

Signs in with an API token in the sign-in form (the stack runs with authentication on), submits
a URL served from 127.0.0.1 (a POST with the session's CSRF token), watches its live progress
reach "completed" through EventSource (with the session cookie), finds the item in the library
and opens it, signs out; saves a screenshot of the finished page to ``test-artifacts/`` for
people to look at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.pages import PageServer

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _sign_in(page: Any, api: str, token: str) -> None:
    from playwright.sync_api import expect

    page.goto(api + "/")
    expect(page.locator("#sign-in-panel")).to_be_visible(timeout=15_000)
    expect(page.locator("#app")).to_be_hidden()
    page.fill("#token", token)
    page.click("#sign-in-form button")
    expect(page.locator("#app")).to_be_visible(timeout=15_000)
    expect(page.locator("#sign-in-panel")).to_be_hidden()


def test_a_person_submits_a_url_watches_it_complete_and_finds_it(
        api: str, api_token: str, page_server: PageServer) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is needed: apt-get install chromium (.ci/run does)"
    url = page_server.url("/article.html") + "?from=browser"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # The page lives under a strict Content-Security-Policy: nothing of it is refused.
            refused: list[str] = []
            page.on("console", lambda m: refused.append(m.text)
                    if "Content Security Policy" in m.text else None)
            page.goto(api + "/")
            expect(page.locator("#health")).to_have_text("ok", timeout=15_000)
            # A token that is not valid is refused in the form, in words.
            page.fill("#token", "lbr_" + "x" * 43)
            page.click("#sign-in-form button")
            expect(page.locator("#sign-in-error")).to_contain_text("not valid")
            _sign_in(page, api, api_token)
            expect(page.locator("#who")).to_have_text("end-to-end tests (admin)")
            cookies = {c["name"]: c for c in page.context.cookies()}
            session = cookies["librarian_session"]
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            page.fill("#urls", url)
            page.click("#submit-form button")
            job = page.locator(".job").first
            expect(job).to_have_class("job completed", timeout=90_000)
            expect(job.locator(".stage.done")).to_have_count(3)
            expect(job.locator(".bar > div")).to_have_attribute("style", "width: 100%;")
            expect(job.locator(".status a")).to_have_text("Growing Tomatoes at Home")
            library = page.locator("#items .item", has_text="Growing Tomatoes at Home")
            expect(library.first).to_be_visible(timeout=15_000)
            job.locator(".status a").click()
            expect(page.locator("#item h2")).to_have_text("Growing Tomatoes at Home")
            expect(page.locator("#item")).to_contain_text("Original page")
            # Search passages: the query's words marked, the rest as text.
            page.fill("#query", "tomatoes")
            page.click("#search-form button")
            expect(page.locator("#items .passage mark").first).to_have_text(
                "tomatoes", ignore_case=True, timeout=15_000)
            page.screenshot(path=str(ARTIFACTS / "browser-finished.png"), full_page=True)
            assert refused == []
            # Signed in survives a reload (the cookie; the CSRF token is asked for again) ...
            page.reload()
            expect(page.locator("#app")).to_be_visible(timeout=15_000)
            again = page_server.url("/missing") + "?after=reload"
            page.fill("#urls", again)
            page.click("#submit-form button")
            expect(page.locator(".job", has_text="after=reload")).to_be_visible(timeout=15_000)
            expect(page.locator("#submit-error")).to_have_text("")
            # ... and signing out ends it: the page asks for a token again.
            page.click("#sign-out")
            expect(page.locator("#sign-in-panel")).to_be_visible()
            page.reload()
            expect(page.locator("#sign-in-panel")).to_be_visible(timeout=15_000)
        finally:
            browser.close()
    assert (ARTIFACTS / "browser-finished.png").stat().st_size > 10_000


def test_a_failing_url_shows_its_error_in_plain_words(api: str, api_token: str,
                                                      page_server: PageServer) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            _sign_in(page, api, api_token)
            page.fill("#urls", page_server.url("/missing") + "?from=browser")
            page.click("#submit-form button")
            job = page.locator(".job").first
            expect(job).to_have_class("job failed", timeout=90_000)
            expect(job.locator(".status")).to_contain_text("The page does not exist (404).")
            expect(job.locator(".status")).to_contain_text("not_found")
        finally:
            browser.close()
