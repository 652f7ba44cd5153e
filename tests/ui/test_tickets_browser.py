"""The tickets pages in headless Chromium: filter the list, open a ticket, answer it, resolve
it and see a refused move's reason, clicked through as an agent does with CSP and CSRF on."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.e2e.harness import Tgrelay
from tgrelay.support import service as support
from tgrelay.support.models import Direction, TicketStatus
from tgrelay.testing.emulator_server import RunningEmulator

from .conftest import needs_chromium
from .test_support_browser import sign_in_to
from .ticket_scene import ADA, CY, customer_writes, make_desk, quick_relay

pytestmark = [pytest.mark.slow, needs_chromium]


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    async with quick_relay(emulator, tmp_path) as found:
        yield found


async def test_the_list_is_filtered_by_desk_and_a_ticket_opened(
    relay: Tgrelay, emulator: RunningEmulator, page: Page
) -> None:
    """Choosing a desk and Filter keeps only its tickets (the choice stays selected); the
    ticket's link opens its page with the customer's message."""
    help_desk = await make_desk(relay, emulator, "help_bot", "Help forum", "Help")
    sales = await make_desk(relay, emulator, "sales_bot", "Sales forum", "Sales")
    await customer_writes(relay, emulator, help_desk, ADA, "my order never arrived")
    quote = await customer_writes(relay, emulator, sales, CY, "a quote for 40 seats?")
    await sign_in_to(page, relay, "/ui/tickets")
    await expect(page.locator("#tickets tbody tr")).to_have_count(2)

    await page.select_option("#desk", sales.id)
    await page.click("#ticket-filters button[type=submit]")
    await expect(page).to_have_url(re.compile(rf"/ui/tickets\?status=&assignee=&desk={sales.id}$"))
    await expect(page.locator("#tickets tbody tr")).to_have_count(1)
    await expect(page.locator("#tickets tbody tr")).to_contain_text("a quote for 40 seats?")
    await expect(page.locator("#desk")).to_have_value(sales.id)
    await page.click("#tickets tbody tr a >> text=#2")

    await expect(page).to_have_url(f"{relay.base_url}/ui/tickets/{quote.id}")
    await expect(page.locator("h1")).to_have_text("#2 a quote for 40 seats?")
    await expect(page.locator("#conversation li.customer .text")).to_have_text(
        ["a quote for 40 seats?"]
    )


async def test_a_ticket_is_answered_resolved_and_a_refused_move_says_why(
    relay: Tgrelay, emulator: RunningEmulator, page: Page
) -> None:
    """The answer appears as the agent's message and opens the ticket; Resolve resolves it;
    moving it to pending is refused on the status form with the state machine's reason."""
    desk = await make_desk(relay, emulator, "help_bot", "Help forum", "Help")
    ticket = await customer_writes(relay, emulator, desk, ADA, "my order never arrived")
    await sign_in_to(page, relay, "/ui/tickets")
    await page.click(f'a[href="/ui/tickets/{ticket.id}"] >> nth=0')

    await page.fill("#text", "Sorry! A new parcel leaves today.")
    await page.click("#send-answer")
    await expect(page.locator(".flash.notice")).to_have_text(
        "Answer queued for the customer (and shown in the topic)."
    )
    await expect(page.locator("#conversation li.agent .text")).to_have_text(
        ["Sorry! A new parcel leaves today."]
    )
    await expect(page.locator("#ticket-facts .badge")).to_have_text("open")
    await page.select_option("#status", "resolved")
    await page.click("#status-form button[type=submit]")
    await expect(page.locator(".flash.notice")).to_have_text("Status changed.")
    await expect(page.locator("#ticket-facts .badge")).to_have_text("resolved")
    await page.select_option("#status", "pending")
    await page.click("#status-form button[type=submit]")
    await expect(page.locator("#status-form .flash.error")).to_have_text(
        f"Not done: ticket {ticket.id} cannot become pending: a resolved ticket must be "
        "reopened before it can wait on the customer"
    )

    current = await support.get_ticket(relay.runtime, relay.workspace_id, ticket.id)
    messages = await support.list_messages(relay.runtime, relay.workspace_id, ticket.id)
    assert current.status is TicketStatus.RESOLVED
    assert current.first_response_at is not None
    assert [(m.direction, m.text) for m in messages] == [
        (Direction.CUSTOMER, "my order never arrived"),
        (Direction.AGENT, "Sorry! A new parcel leaves today."),
    ]
