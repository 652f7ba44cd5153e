"""The connect page in headless Chromium, following a user's steps in (emulated) Telegram live."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.e2e.harness import Tgrelay

from .conftest import needs_chromium
from .harness import ANN, Telegram, start_token

pytestmark = [pytest.mark.slow, needs_chromium]


async def test_connect_page_follows_the_user_without_reloading(
    relay: Tgrelay, telegram: Telegram, page: Page
) -> None:
    """After signing in, the connect page shows a QR code, then 'waiting for group' once the user sends /start, then the group's title once the bot joins it, all without a reload."""
    bot = await telegram.new_bot("alerts_bot")
    await relay.connect_bot(bot["token"])

    await page.goto(f"{relay.base_url}/ui/connections")
    await expect(page).to_have_url(f"{relay.base_url}/ui/login")
    await page.fill("#api_key", relay.api_key)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(f"{relay.base_url}/ui/connections")

    await page.goto(f"{relay.base_url}/ui/connect")
    await page.select_option("#bot_id", str(bot["id"]))
    await page.click("text=Show QR code")
    await expect(page).to_have_url(re.compile(r"/ui/connect/cs_[0-9a-f]+$"))

    status = page.locator("#connect-status")
    await expect(status).to_have_attribute("data-state", "waiting_private")
    await expect(status).to_have_text("Waiting for /start in a private chat")
    await expect(page.locator("#qr svg")).to_be_visible()
    start_link = await page.get_attribute("#start-link", "href")
    assert start_link is not None
    token = start_token(start_link)
    assert [start_link, await page.get_attribute("#startgroup-link", "href")] == [
        f"https://t.me/alerts_bot?start={token}",
        f"https://t.me/alerts_bot?startgroup={token}",
    ]
    # A reload would drop this mark: the page must change by itself.
    await page.evaluate("window.notReloaded = true")

    await telegram.send_private(bot["id"], ANN, f"/start {token}")
    await expect(status).to_have_attribute("data-state", "waiting_group")
    await expect(status).to_have_text("Verified as Ann — waiting for group")
    await expect(page.locator("#qr")).to_be_hidden()

    chat_id = await telegram.new_group("Ops room")
    await telegram.add_bot(chat_id, bot["id"], ANN)
    await expect(status).to_have_attribute("data-state", "connected")
    await expect(status).to_have_text("Connected to Ops room")
    assert await page.evaluate("window.notReloaded") is True
