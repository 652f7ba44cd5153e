"""The report page in headless Chromium: reached from the navigation, filtered to one desk
and then another, the figures following the filter."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.async_api import Page, expect

from tests.e2e.harness import Tgrelay
from tgrelay.db import tables
from tgrelay.support import desks
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces

from .conftest import needs_chromium
from .support_scene import desk_bot, forum_connection
from .test_support_browser import sign_in_to

pytestmark = [pytest.mark.slow, needs_chromium]


async def test_the_report_follows_the_desk_filter(
    relay: Tgrelay, emulator: RunningEmulator, page: Page
) -> None:
    """A desk with one ticket answered in 30 s shows it; the other desk shows none."""
    rt = relay.runtime
    principal = await workspaces.authenticate(rt.db, relay.api_key)
    help_bot = await desk_bot(relay, emulator, "help_bot")
    sales_bot = await desk_bot(relay, emulator, "sales_bot")
    help_desk = await desks.create_desk(
        rt,
        principal,
        bot_id=help_bot.id,
        connection_id=await forum_connection(relay, emulator, help_bot, "Help desk"),
        name="Help",
    )
    sales_desk = await desks.create_desk(
        rt,
        principal,
        bot_id=sales_bot.id,
        connection_id=await forum_connection(relay, emulator, sales_bot, "Sales desk"),
        name="Sales",
    )
    now = rt.clock()
    async with rt.db.transaction() as conn:
        await conn.execute(
            tables.tickets.insert().values(
                id="tkt_report1",
                workspace_id=relay.workspace_id,
                number=1,
                desk_id=help_desk.id,
                bot_id=help_bot.id,
                customer_chat_id=42,
                customer_id=42,
                customer='{"first_name": "C"}',
                subject="help",
                status="open",
                topic_chat_id=-1,
                created_at=now - timedelta(seconds=60),
                updated_at=now,
                first_response_at=now - timedelta(seconds=30),
            )
        )
    await sign_in_to(page, relay, "/ui/report")
    totals = page.locator("#totals tbody tr")

    await page.select_option("select[name=desk_id]", help_desk.id)
    await page.click("form.filters button[type=submit]")
    await expect(page).to_have_url(re.compile(rf"/ui/report\?desk_id={help_desk.id}&"))
    await expect(totals.nth(0)).to_have_text(re.compile(r"Tickets opened\s*1\s*$"))
    await expect(totals.nth(2)).to_have_text(
        re.compile(r"First response p50 / p90\s*30 s / 30 s\s*$")
    )
    await page.select_option("select[name=desk_id]", sales_desk.id)
    await page.click("form.filters button[type=submit]")
    await expect(page).to_have_url(re.compile(rf"/ui/report\?desk_id={sales_desk.id}&"))
    await expect(totals.nth(0)).to_have_text(re.compile(r"Tickets opened\s*0\s*$"))

    assert await page.locator("select[name=desk_id]").input_value() == sales_desk.id
