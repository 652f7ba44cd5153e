"""The knowledge base's page in headless Chromium: an article written, refused, searched and
deleted as an operator does, with the pages' CSP and CSRF in force."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.e2e.harness import Tgrelay
from tgrelay.support import kb

from .conftest import needs_chromium
from .test_support_browser import sign_in_to

pytestmark = [pytest.mark.slow, needs_chromium]


async def test_an_articles_error_shows_on_its_form_in_the_browser(
    relay: Tgrelay, page: Page
) -> None:
    """A too-long tag is shown on the form with the text kept; fixing it saves the article,
    the search finds it, and Delete removes it."""
    await sign_in_to(page, relay, "/ui/articles")

    await page.fill("#title", "Refunds")
    await page.fill("#body", "A refund reaches your card in 5 days.")
    await page.fill("#tags", "billing, " + "x" * 65)
    await page.check("#auto_answer")
    await page.click("#article-form button[type=submit]")
    await expect(page.locator(".flash.error")).to_have_text(
        "Not saved: at most 20 tags of 1 to 64 characters"
    )
    await expect(page.locator("#body")).to_have_value("A refund reaches your card in 5 days.")
    await expect(page.locator("#auto_answer")).to_be_checked()
    await page.fill("#tags", "billing, refund")
    await page.click("#article-form button[type=submit]")
    await expect(page.locator(".flash.notice")).to_have_text("Article saved.")
    [saved] = await kb.list_articles(relay.runtime, relay.workspace_id)
    await page.click('a[href="/ui/articles"]')
    await page.fill("#q", "refund")
    await page.click("#article-search button[type=submit]")
    await expect(page.locator("#articles tbody td[data-label=Title]")).to_have_text(["Refunds"])
    await page.click("#articles a")
    await page.click("#delete-article button[type=submit]")
    await expect(page.locator(".flash.notice")).to_have_text("Article Refunds deleted.")

    assert (saved.title, saved.body, saved.tags, saved.language, saved.auto_answer) == (
        "Refunds",
        "A refund reaches your card in 5 days.",
        ("billing", "refund"),
        None,
        True,
    )
    assert await kb.list_articles(relay.runtime, relay.workspace_id) == []
