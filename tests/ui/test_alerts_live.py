"""The alerts page in headless Chromium: a queued alert's status turns to sent in place."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.e2e.harness import Tgrelay
from tgrelay.groups import service as groups

from .conftest import STEP_TIMEOUT_MS, needs_chromium
from .harness import Telegram, browser
from .test_pages import link_group

pytestmark = [pytest.mark.slow, needs_chromium]

# Long enough that the page is shown before the alert can reach Telegram.
HELD_SECONDS = 3


async def test_a_queued_alert_turns_to_sent_without_a_reload(
    relay: Tgrelay, telegram: Telegram, page: Page
) -> None:
    """An alert sent from the page is listed as queued, then its badge and sent time change to sent by themselves."""
    bot = await telegram.new_bot("alerts_bot")
    await relay.connect_bot(bot["token"])
    async with browser(relay, relay.api_key) as client:
        await link_group(relay, telegram, client, bot["id"], "Ops room")
    [connection] = await groups.list_connections(relay.runtime, relay.workspace_id)
    await telegram.delay_requests(HELD_SECONDS)

    await page.goto(f"{relay.base_url}/ui/login")
    await page.fill("#api_key", relay.api_key)
    await page.click("button[type=submit]")
    await page.goto(f"{relay.base_url}/ui/connections/{connection.id}/notifications")
    await page.fill("#text", "Deploy finished")
    await page.click("#send-alert button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/notifications\?sent=ntf_"))
    row = page.locator("#notifications tbody tr").first
    badge = row.locator(".live-status .badge")
    await expect(badge).to_have_attribute("data-status", "queued")
    await expect(row.locator(".live-sent time")).to_have_count(0)
    # A reload would drop this mark: the row must change by itself.
    await page.evaluate("window.notReloaded = true")

    # The send waits for the held request and for the group's limit after its welcome.
    await expect(badge).to_have_attribute("data-status", "sent", timeout=STEP_TIMEOUT_MS)
    await expect(badge).to_have_text("sent")
    await expect(row.locator(".live-sent time")).to_have_count(1)
    assert await page.evaluate("window.notReloaded") is True
