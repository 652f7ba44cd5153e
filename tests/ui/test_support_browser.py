"""The support desk's setup pages in headless Chromium: each page's main flow, clicked
through as an operator does, with the pages' CSP and CSRF in force."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.e2e.harness import Tgrelay
from tgrelay.support import agents, desks, snippets
from tgrelay.support.models import Assignment
from tgrelay.testing.emulator_server import RunningEmulator

from .conftest import needs_chromium
from .support_scene import desk_bot, forum_connection

pytestmark = [pytest.mark.slow, needs_chromium]


async def sign_in_to(page: Page, relay: Tgrelay, path: str) -> None:
    """Sign in, then reach the page through the navigation's link to it."""
    await page.goto(f"{relay.base_url}{path}")
    await page.fill("#api_key", relay.api_key)
    await page.click("button[type=submit]")
    await page.click(f'nav a[href="{path}"]')
    await expect(page).to_have_url(f"{relay.base_url}{path}")


async def test_a_desk_is_created_edited_and_deleted_in_the_browser(
    relay: Tgrelay, emulator: RunningEmulator, page: Page
) -> None:
    """Choosing the bot and its forum makes a desk; its settings save; Delete removes it."""
    bot = await desk_bot(relay, emulator, "help_bot")
    forum = await forum_connection(relay, emulator, bot, "Help desk")
    await sign_in_to(page, relay, "/ui/desks")

    await page.select_option("#bot_id", str(bot.id))
    await page.select_option("#connection_id", forum)
    await page.select_option("#assignment", "round_robin")
    await page.click("#create-desk button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/ui/desks/dsk_[0-9a-f]+\?created=1$"))
    await expect(page.locator(".flash.notice")).to_have_text("Desk created.")
    await page.fill("#name", "Help")
    await page.fill("#reopen_window_seconds", "86400")
    await page.fill("#greeting_text", "")
    await page.click("#desk-settings button[type=submit]")
    await expect(page.locator(".flash.notice")).to_have_text("Settings saved.")
    [saved] = await desks.list_desks(relay.runtime, relay.workspace_id)
    await page.goto(f"{relay.base_url}/ui/desks")
    await expect(page.locator("#desks tbody tr")).to_have_text(
        re.compile(r"Help\s+@help_bot\s+Help desk\s+round robin\s+1 day")
    )
    await page.goto(f"{relay.base_url}/ui/desks/{saved.id}")
    await page.click("#delete-desk button[type=submit]")
    await expect(page.locator(".flash.notice")).to_have_text("Desk deleted.")

    assert (saved.name, saved.assignment, saved.reopen_window_seconds, saved.greeting_text) == (
        "Help",
        Assignment.ROUND_ROBIN,
        86400,
        None,
    )
    assert saved.closing_text == desks.DEFAULT_CLOSING
    assert await desks.list_desks(relay.runtime, relay.workspace_id) == []


async def test_an_agent_is_added_and_edited_in_the_browser(relay: Tgrelay, page: Page) -> None:
    """The form adds an agent; Edit fills the form with it; saving replaces its settings."""
    await sign_in_to(page, relay, "/ui/agents")

    await page.fill("#telegram_user_id", "5002")
    await page.fill("#name", "Bob")
    await page.click("#agent-form button[type=submit]")
    await expect(page.locator(".flash.notice")).to_have_text("Agent 5002 saved.")
    await page.click("#agents tbody tr a")
    await expect(page.locator("#name")).to_have_value("Bob")
    await page.fill("#capacity", "2")
    await page.uncheck("#active")
    await page.click("#agent-form button[type=submit]")
    await expect(page.locator("#agents tbody tr")).to_contain_text("inactive")

    agent = await agents.get_agent(relay.runtime, relay.workspace_id, 5002)
    assert (agent.name, agent.capacity, agent.active) == ("Bob", 2, False)


async def test_a_snippets_error_shows_on_its_form_in_the_browser(
    relay: Tgrelay, page: Page
) -> None:
    """An unknown variable is shown on the form with the text kept; fixing it saves it;
    Delete removes it."""
    await sign_in_to(page, relay, "/ui/snippets")

    await page.fill("#name", "refund")
    await page.fill("#text", "Hi {{ customer.email }}")
    await page.click("#snippet-form button[type=submit]")
    await expect(page.locator(".flash.error")).to_contain_text(
        "Not saved: unknown variable: customer.email; known: customer.id"
    )
    await expect(page.locator("#text")).to_have_value("Hi {{ customer.email }}")
    await page.fill("#text", "Hi {{ customer.first_name }}, your refund is on its way.")
    await page.click("#snippet-form button[type=submit]")
    await expect(page.locator(".flash.notice")).to_have_text("Snippet saved.")
    [saved] = await snippets.list_snippets(relay.runtime, relay.workspace_id)
    await page.click("#delete-snippet button[type=submit]")
    await expect(page.locator(".flash.notice")).to_have_text("Snippet refund deleted.")

    assert (saved.name, saved.text) == (
        "refund",
        "Hi {{ customer.first_name }}, your refund is on its way.",
    )
    assert await snippets.list_snippets(relay.runtime, relay.workspace_id) == []
