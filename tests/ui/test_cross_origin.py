"""Headless Chromium: a page served from another origin (another port of 127.0.0.1, so the
same site, whose requests carry the SameSite=Strict cookie) cannot change anything, by form
post or by fetch, even when it knows the session's CSRF token."""

from __future__ import annotations

import html
import json

import pytest
from playwright.async_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.e2e.harness import Tgrelay
from tgrelay.bots import service as bots
from tgrelay.bots.models import BotStatus
from tgrelay.testing.serving import serving
from tgrelay.workspaces import keys

from .conftest import needs_chromium
from .harness import Telegram

pytestmark = [pytest.mark.slow, needs_chromium]


def attacker_site(target: str, token: str, bot_id: int) -> Starlette:
    """Pages of another origin: a form that posts to tgrelay, and a script that fetches."""
    form = f"""<!doctype html><title>win a prize</title>
<form id="steal" method="post" action="{html.escape(target)}/ui/api-keys">
  <input type="hidden" name="name" value="attacker">
  <input type="hidden" name="scope" value="admin">
  <input type="hidden" name="csrf_token" value="{html.escape(token)}">
  <button type="submit">Claim</button>
</form>"""
    script = f"""<!doctype html><title>win a prize</title><script>
window.attack = () => fetch({json.dumps(target + f"/ui/bots/{bot_id}/disconnect")}, {{
  method: "POST", mode: "no-cors", credentials: "include",
  body: new URLSearchParams({{csrf_token: {json.dumps(token)}}}),
}}).then(r => r.type, e => "error: " + e);
</script>"""

    async def form_page(_request: Request) -> HTMLResponse:
        return HTMLResponse(form)

    async def script_page(_request: Request) -> HTMLResponse:
        return HTMLResponse(script)

    return Starlette(routes=[Route("/form", form_page), Route("/fetch", script_page)])


async def test_a_page_of_another_origin_cannot_change_anything(
    relay: Tgrelay, telegram: Telegram, page: Page
) -> None:
    """Another origin's form post and fetch are refused (no key created, bot still connected); the same form from our own page works."""
    bot = await telegram.new_bot("guarded_bot")
    await relay.connect_bot(bot["token"])
    await page.goto(f"{relay.base_url}/ui/login")
    await page.fill("#api_key", relay.api_key)
    await page.click("button[type=submit]")
    await page.goto(f"{relay.base_url}/ui/api-keys")
    token = await page.locator("#create-key input[name=csrf_token]").input_value()
    assert token

    async with serving(attacker_site(relay.base_url, token, bot["id"])) as evil:
        assert evil.base_url != relay.base_url
        await page.goto(f"{evil.base_url}/form")
        await page.click("#steal button")
        await expect(page).to_have_url(f"{relay.base_url}/ui/api-keys")
        await expect(page.locator(".flash.error")).to_have_text(
            f"Refused: this request did not come from a page of {relay.base_url}."
        )
        await page.goto(f"{evil.base_url}/fetch")
        fetched = await page.evaluate("window.attack()")  # resolves once tgrelay has answered

    rt = relay.runtime
    assert fetched == "opaque"
    assert [k.name for k in await keys.list_keys(rt.db, relay.workspace_id)] == ["first key"]
    assert (await bots.get_bot(rt, relay.workspace_id, bot["id"])).status is not (
        BotStatus.DISCONNECTED
    )

    # The same session and form, from our own page: the refusals above were about origin.
    await page.goto(f"{relay.base_url}/ui/api-keys")
    await page.fill("#name", "ours")
    await page.click("#create-key button[type=submit]")
    await expect(page.locator("#new-key")).to_be_visible()
    assert [k.name for k in await keys.list_keys(rt.db, relay.workspace_id)] == [
        "first key",
        "ours",
    ]
