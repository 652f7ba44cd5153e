"""The endpoint pages: adding endpoints, following their deliveries, retrying and replaying them;
in headless Chromium for the whole journey, over plain HTTP for the rest."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect
from standardwebhooks.webhooks import Webhook

from tests.e2e.harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for
from tgrelay.events import service as events
from tgrelay.events.models import DeliveryStatus, EndpointStatus
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.testing.receiver import Delivery, receiving
from tgrelay.workspaces import service as workspaces

from .conftest import needs_chromium
from .harness import Telegram, browser, table_rows

# Two attempts, the second 0.1 s after the first: a refused event is a dead letter at once.
RETRY_SCHEDULE = [0, 0.1]
# Times read relative to now; the exact one is the hover text.
SHOWN_TIME = re.compile(r"just now|\d+ (s|min|h) ago|\d+ days? ago")
ALERT = re.compile(r'<p class="flash (?:error|notice)" role="(?:alert|status)">(.*?)</p>')


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    """tgrelay allowed to call receivers on loopback, giving up after two attempts."""
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=True,
        port=port,
        webhooks_allow_private=True,
        webhooks_retry_schedule=RETRY_SCHEDULE,
    )
    async with running_tgrelay(settings, port) as relay:
        yield relay


def flash(html: str) -> list[str]:
    """The error and notice lines at the top of a page."""
    return ALERT.findall(html)


async def reload_until(page: Page, check: Callable[[], Awaitable[bool]]) -> None:
    """Reload the page until `check` holds: these pages change only when loaded again."""

    async def reloaded() -> bool:
        await page.reload()
        return await check()

    await eventually(reloaded, interval=0.2)


async def has_text(page: Page, selector: str, text: str) -> bool:
    return await page.text_content(selector) == text


@pytest.mark.slow
@needs_chromium
async def test_dead_letter_is_found_and_retried_from_the_pages(
    relay: Tgrelay, telegram: Telegram, page: Page
) -> None:
    """An endpoint added through the form shows its secret once; an event its receiver refuses is listed under Dead letters, its page shows both 500 attempts, and its Retry button delivers it once the receiver is back."""
    healthy = False

    async def broken_until_fixed(delivery: Delivery) -> int:
        return 200 if healthy else 500

    async with receiving(broken_until_fixed) as receiver:
        await page.goto(f"{relay.base_url}/ui/endpoints")
        await expect(page).to_have_url(f"{relay.base_url}/ui/login")
        await page.fill("#api_key", relay.api_key)
        await page.click("button[type=submit]")
        await page.click("nav >> text=Endpoints")
        await expect(page).to_have_url(f"{relay.base_url}/ui/endpoints")

        await page.fill("#url", receiver.url)
        await page.fill("#event_types", "bot.connected")
        await page.fill("#description", "CI hook")
        await page.click("text=Add endpoint")
        await expect(page.locator("#secret")).to_have_text(re.compile(r"^whsec_\S+$"))
        secret = await page.text_content("#secret")
        assert secret is not None
        await expect(page.locator("#new-secret")).to_contain_text("it won't be shown again")
        assert table_rows(await page.content()) == [
            [receiver.url, "enabled", "closed", "bot.connected", "CI hook"]
        ]

        await page.click("#new-endpoint")
        await expect(page).to_have_url(re.compile(r"/ui/endpoints/ep_[0-9a-f]+$"))
        endpoint_url = page.url
        assert secret not in await page.content()
        bot = await telegram.new_bot("events_bot")
        await relay.connect_bot(bot["token"])
        await page.click("#delivery-tabs >> text=Dead letters")
        await expect(page).to_have_url(f"{endpoint_url}?status=dead_letter")
        await reload_until(page, page.locator("#deliveries").is_visible)
        [dead] = table_rows(await page.content())
        delivery_id = dead[0]
        assert re.fullmatch(r"dlv_\d+", delivery_id)
        assert SHOWN_TIME.fullmatch(dead[6])
        assert [*dead[1:6], *dead[7:]] == [
            "bot.connected",
            "dead letter",
            "2",
            "500",
            "retry schedule exhausted; last: HTTP 500",
            "—",
            "Retry",
        ]

        await page.click(f"#deliveries >> text={delivery_id}")
        await expect(page).to_have_url(f"{relay.base_url}/ui/deliveries/{delivery_id}")
        await expect(page.locator("#delivery-status")).to_have_text("dead letter")
        refused = table_rows(await page.content())
        sent = receiver.receiver.deliveries
        assert await page.text_content("#webhook-id") == sent[0].headers["webhook-id"]
        assert await page.text_content("#body") == sent[0].body.decode()

        healthy = True
        await page.get_by_role("button", name="Retry").click()
        await expect(page).to_have_url(f"{relay.base_url}/ui/deliveries/{delivery_id}")
        await reload_until(page, lambda: has_text(page, "#delivery-status", "delivered"))
        delivered = table_rows(await page.content())

    assert all(SHOWN_TIME.fullmatch(row[0]) and row[2].isdigit() for row in delivered)
    assert [(row[1], row[3], row[4]) for row in delivered] == [
        ("500", "HTTP 500", "—"),
        ("500", "HTTP 500", "—"),
        ("200", "—", "—"),
    ]
    # The same two attempts; their relative start times moved on between the two loads.
    assert [row[1:] for row in refused] == [row[1:] for row in delivered[:2]]
    assert len(sent) == 3
    assert {d.headers["webhook-id"] for d in sent} == {sent[0].headers["webhook-id"]}
    assert Webhook(secret).verify(sent[2].body, sent[2].headers)["type"] == "bot.connected"


async def test_add_form_shows_why_an_endpoint_was_refused(relay: Tgrelay) -> None:
    """A refused URL or an unknown event type gets the form back with the reason and what was typed, and adds nothing."""
    async with browser(relay, relay.api_key) as client:
        refused = await client.post(
            "/ui/endpoints",
            data={"url": "http://169.254.169.254/latest/meta-data", "description": "metadata"},
        )
        unknown = await client.post(
            "/ui/endpoints",
            data={"url": "http://127.0.0.1:9/hook", "event_types": "bot.connected, bot.exploded"},
        )
    assert [refused.status_code, unknown.status_code] == [422, 422]
    assert refused.headers["content-type"] == "text/html; charset=utf-8"
    assert [flash(refused.text), flash(unknown.text)] == [
        [
            "No endpoint added: webhook target refused: "
            "169.254.169.254 is a link-local address (cloud metadata)"
        ],
        ["No endpoint added: unknown event types: bot.exploded (GET /v1/event-types lists them)"],
    ]
    assert 'value="http://169.254.169.254/latest/meta-data"' in refused.text
    assert 'value="metadata"' in refused.text
    assert 'value="bot.connected, bot.exploded"' in unknown.text
    assert await events.list_endpoints(relay.runtime, relay.workspace_id) == []


async def test_endpoint_buttons_rotate_switch_and_replay(
    relay: Tgrelay, telegram: Telegram
) -> None:
    """Adding and rotating show a working secret on an uncached page; Disable and Enable switch the endpoint; Replay is refused while disabled, then sends the delivered event again and says how many; the page shows the versions the endpoint pinned."""
    rt = relay.runtime
    async with receiving() as receiver, browser(relay, relay.api_key) as client:
        added = await client.post(
            "/ui/endpoints", data={"url": receiver.url, "event_types": "bot.connected"}
        )
        [endpoint] = await events.list_endpoints(rt, relay.workspace_id)
        bot = await telegram.new_bot("events_bot")
        await relay.connect_bot(bot["token"])
        [first] = await receiver.receiver.wait_for(1)

        async def delivered() -> bool:
            found = await events.list_deliveries(
                rt,
                relay.workspace_id,
                endpoint.id,
                status=DeliveryStatus.DELIVERED,
                before=None,
                limit=10,
            )
            return len(found) == 1

        await eventually(delivered)
        path = f"/ui/endpoints/{endpoint.id}"
        rotated = await client.post(f"{path}/rotate-secret")
        unpinned = await client.get(path)
        principal = await workspaces.authenticate(rt.db, relay.api_key)
        await events.update_endpoint(rt, principal, endpoint.id, versions={"bot.connected": 1})
        disabled = await client.post(f"{path}/disable", follow_redirects=True)
        while_disabled = await client.post(f"{path}/replay", data={"since": "2020-01-01T00:00"})
        enabled = await client.post(f"{path}/enable", follow_redirects=True)
        replayed = await client.post(
            f"{path}/replay",
            data={"since": "2020-01-01T00:00", "status": "delivered"},
            follow_redirects=True,
        )
        [_, again] = await receiver.receiver.wait_for(2)

    [old_secret] = re.findall(r'<code id="secret">(whsec_\S+)</code>', added.text)
    [new_secret] = re.findall(r'<code id="secret">(whsec_\S+)</code>', rotated.text)
    assert (added.status_code, rotated.status_code) == (201, 200)
    assert [added.headers["cache-control"], rotated.headers["cache-control"]] == ["no-store"] * 2
    assert old_secret != new_secret
    # During the rotation overlap both secrets sign; a page that showed a wrong one would fail.
    assert Webhook(old_secret).verify(again.body, again.headers) == first.json()
    assert Webhook(new_secret).verify(again.body, again.headers) == first.json()
    assert again.headers["webhook-id"] == first.headers["webhook-id"]

    reason = f"disabled by {(await workspaces.authenticate(rt.db, relay.api_key)).actor}"
    assert (disabled.url.path, disabled.status_code) == (path, 200)
    assert f'data-status="disabled">disabled</span> {reason}</dd>' in disabled.text
    assert while_disabled.status_code == 409
    assert flash(while_disabled.text) == [
        f"Nothing replayed: endpoint {endpoint.id} is disabled ({reason}); enable it first"
    ]
    assert (
        'id="endpoint-status"><span class="badge good" data-status="enabled">enabled</span></dd>'
        in enabled.text
    )
    assert '<dd id="endpoint-versions">the latest of each type</dd>' in unpinned.text
    assert '<dd id="endpoint-versions">bot.connected v1</dd>' in enabled.text
    assert (replayed.url.path, replayed.url.params["replayed"]) == (path, "1")
    assert flash(replayed.text) == ["Replay: 1 delivery queued again"]


async def test_another_workspaces_endpoint_and_deliveries_are_not_found(
    relay: Tgrelay, telegram: Telegram
) -> None:
    """Another workspace's endpoint and delivery are not listed and answer 404 on every page and button, changing nothing."""
    rt = relay.runtime
    _, other_key = await workspaces.create_workspace(rt.db, "other team", now=rt.clock())
    other = await workspaces.authenticate(rt.db, other_key)
    async with receiving() as receiver:
        theirs = await events.create_endpoint(
            rt, other, url=receiver.url, event_types=["bot.connected"], description=None
        )
        bot = await telegram.new_bot("other_bot")
        async with httpx.AsyncClient(
            base_url=relay.base_url, headers={"Authorization": f"Bearer {other_key}"}, timeout=10
        ) as api:
            connected = await api.post("/v1/bots", json={"token": bot["token"]})
            assert connected.status_code == 201, connected.text
        [delivery] = await events.list_deliveries(
            rt, other.workspace_id, theirs.endpoint.id, status=None, before=None, limit=10
        )
        path, dlv = f"/ui/endpoints/{theirs.endpoint.id}", delivery.public_id
        async with browser(relay, relay.api_key) as client:
            listed = await client.get("/ui/endpoints")
            answers = [
                await client.get(path),
                await client.post(f"{path}/disable"),
                await client.post(f"{path}/enable"),
                await client.post(f"{path}/rotate-secret"),
                await client.post(f"{path}/replay", data={"since": "2020-01-01T00:00"}),
                await client.get(f"/ui/deliveries/{dlv}"),
                await client.post(f"/ui/deliveries/{dlv}/retry"),
            ]
        after = await events.get_endpoint(rt, other.workspace_id, theirs.endpoint.id)

    assert "No endpoints yet" in listed.text
    assert [(a.status_code, flash(a.text)) for a in answers] == [
        *[(404, [f"no endpoint {theirs.endpoint.id}"])] * 5,
        *[(404, [f"no delivery {dlv}"])] * 2,
    ]
    assert (after.status, after.previous_secret_expires_at) == (EndpointStatus.ENABLED, None)
