"""Every page in headless Chromium: usable at 390 px wide (no sideways scrolling), and
pictured in docs/ui/ for docs/ui.md, regenerated on every run so the pictures never go stale.

The pictures only change when a page does: the emulator is seeded (bot ids, chat ids and
update ids repeat), the clock the pages read is frozen five minutes after the last step,
and values that are random on every run (token fingerprints, key and secret texts, ids,
ports, timestamps inside bodies) are written as fixed stand-ins before each shot.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, ViewportSize

from tests.conversations.rows import write_conversation
from tests.e2e.harness import Tgrelay, eventually, free_port, settings_for
from tgrelay.app import TgrelayApp
from tgrelay.conversations import registry
from tgrelay.conversations.models import AbandonReason, Status
from tgrelay.events import service as events
from tgrelay.groups import service as groups
from tgrelay.groups.models import NotificationStatus, SessionState
from tgrelay.support import agents, desks, kb, snippets
from tgrelay.support import service as support
from tgrelay.support.models import TicketStatus
from tgrelay.testing.emulator import BotRecord, Emulator
from tgrelay.testing.emulator_server import RunningEmulator, running_emulator
from tgrelay.testing.receiver import receiving
from tgrelay.testing.serving import serving
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

from .conftest import needs_chromium
from .harness import ANN, Telegram, browser, start_token
from .support_scene import forum_connection
from .test_pages import link_group
from .ticket_scene import ADA, BEN, CY, customer_writes, relayed
from .ticket_scene import Desk as TicketDesk

pytestmark = [pytest.mark.slow, needs_chromium]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ui"
BILLING_FLOW = Path(__file__).resolve().parents[2] / "examples" / "flows" / "billing_address.json"
PHONE_WIDTH = 390
DESKTOP: ViewportSize = {"width": 1200, "height": 800}
BOB = {"id": 5002, "is_bot": False, "first_name": "Bob", "username": "bob"}
# Random on every run, so written as fixed stand-ins before a picture is taken.
STAND_INS = [
    (r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|\+00:00| UTC)?", "2026-03-02T09:30:00Z"),
    (r"(\d{6,}:…)[A-Za-z0-9_-]{4}", "$1Xy9Z"),
    (r"tgr_[A-Za-z0-9_]+", "tgr_8fj3k2m1q0za"),
    (r"whsec_[A-Za-z0-9+/=]+", "whsec_MfKQ9r7pl3Oa2aDm9h6PnXwmeFYq3zFzPvSJkH2jQ7U="),
    (r"evt_[0-9a-f]+", "evt_5f2b9c0e1d7a4b33"),
    (r"ep_[0-9a-f]+", "ep_3c1e9a7b5d2f4e60"),
    (r"cs_[0-9a-f]+", "cs_a3d93689c2e2009c"),
    (r"conn_[0-9a-f]+", "conn_b6db232416ff4880"),
    (r"ntf_[0-9a-f]+", "ntf_0c4f1e2d3a5b6978"),
    (r"dsk_[0-9a-f]+", "dsk_7e3a9c1b5d2f4a68"),
    (r"snp_[0-9a-f]+", "snp_4b8d2f6a0c1e3957"),
    (r"tkt_[0-9a-f]+", "tkt_9d1c7e3a5b2f4068"),
    (r"art_[0-9a-f]+", "art_2c6e0a8f4b1d3957"),
    (r"flw_[0-9a-f]+", "flw_2b1b5b97b9b15a6f"),
    (r"ws_[0-9a-f]+", "ws_a661f0540b5475ea"),
    (r"127\.0\.0\.1:\d+", "127.0.0.1:8000"),
    (r'"msg_id": "[^"]*"', '"msg_id": "m1"'),
]
STEADY_SCRIPT = """(standIns) => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let text = node.nodeValue;
    for (const [pattern, replacement] of standIns) text = text.replace(new RegExp(pattern, "g"), replacement);
    node.nodeValue = text;
  }
  for (const cell of document.querySelectorAll('td[data-label="Duration (ms)"]')) cell.textContent = "12";
  for (const input of document.querySelectorAll('input[type="datetime-local"]')) {
    if (input.value) input.value = "2026-03-02T08:30";
  }
}"""


class FreezableClock:
    """Real time until `freeze`; then the instant given, for every later reader."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self.frozen if self.frozen is not None else datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class Scene:
    relay: Tgrelay
    pages: dict[str, str]  # picture name → path of the page it shows


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    """A seeded emulator: bot ids, chat ids and update ids are the same on every run."""
    async with running_emulator(emulator=Emulator(seed=15)) as running:
        yield running


@pytest.fixture
async def scene(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Scene]:
    """A workspace with healthy and unhealthy bots, updates (one dead), a linked group with
    alerts, an endpoint with deliveries, a support desk with agents, snippets and tickets,
    and a second group halfway through linking."""
    clock = FreezableClock()
    port = free_port()
    # Send pacing lifted: the tickets' opening sends settle in a second, not a minute.
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=True,
        port=port,
        webhooks_allow_private=True,
        send_limit_per_chat=(30, 1.0),
        send_limit_per_group=(1800, 60.0),
    )
    app = TgrelayApp(settings, clock=clock)
    async with serving(app, port=port), receiving() as receiver:
        rt = app.api.state.runtime
        _, key = await workspaces.create_workspace(rt.db, "Acme", now=rt.clock())
        principal = await workspaces.authenticate(rt.db, key)
        base_url = f"http://127.0.0.1:{port}"
        async with (
            httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
            ) as api,
            httpx.AsyncClient(base_url=emulator.base_url, timeout=10) as control,
        ):
            relay = Tgrelay(
                app=app,
                base_url=base_url,
                api=api,
                workspace_id=principal.workspace_id,
                api_key=key,
            )
            telegram, fake = Telegram(control), emulator.emulator
            created = await events.create_endpoint(
                rt, principal, url=f"{receiver.url}", event_types=["bot.*"], description="Ops app"
            )
            alerts = fake.create_bot("alerts_bot", first_name="Alerts")
            support = fake.create_bot("support_bot", first_name="Support")
            shop = fake.create_bot("shop_bot", first_name="Shop")
            for bot in (alerts, support, shop):
                await relay.connect_bot(bot.token)
            fake.revoke(support.id)
            fake.set_webhook_as_foreign(shop.id, "https://other.example/hook")
            for bot in (support, shop):
                checked = await api.post(f"/v1/bots/{bot.id}/health-check")
                assert checked.status_code == 200, checked.text

            async with browser(relay, key) as client:
                await link_group(relay, telegram, client, alerts.id, "Ops room")
                fake.send_message(alerts.id, ANN, None, "Hello! Is the shop open today?")
                fake.send_message(alerts.id, BOB, None, "My order #1042 has not arrived")
                fake.inject_update(alerts.id, {"message": {"text": "no chat, no date"}})

                async def updates_settled() -> bool:
                    found = await relay.updates(alerts.id, limit=100)
                    return all(u["status"] in ("processed", "dead") for u in found) and any(
                        u["status"] == "dead" for u in found
                    )

                await eventually(updates_settled)
                [connection] = await groups.list_connections(rt, relay.workspace_id)
                for text in (
                    "Deploy started: v1.4.2",
                    "Deploy finished: v1.4.2 is live",
                    "Disk usage on db-1 above 85 %",
                ):
                    await groups.notify(
                        rt,
                        principal,
                        connection_id=connection.id,
                        text=text,
                        parse_mode=None,
                        idempotency_key=None,
                    )

                async def alerts_sent() -> bool:
                    found = await groups.list_notifications(
                        rt, relay.workspace_id, connection.id, before=None, limit=10
                    )
                    return [n.status for n in found] == [NotificationStatus.SENT] * 3

                await eventually(alerts_sent)

                async def delivered() -> bool:
                    found = await events.list_deliveries(
                        rt,
                        relay.workspace_id,
                        created.endpoint.id,
                        status=None,
                        before=None,
                        limit=50,
                    )
                    return len(found) >= 5 and all(d.status == "delivered" for d in found)

                await eventually(delivered)
                [delivery, *_] = await events.list_deliveries(
                    rt, relay.workspace_id, created.endpoint.id, status=None, before=None, limit=1
                )

                desk, snippet = await support_setup(relay, emulator, alerts, principal)
                ticket = await tickets_setup(relay, emulator, alerts, desk, principal)
                await flows_setup(relay, principal)

                # Last: a second group halfway through linking, in phase 2.
                started = await client.post("/ui/connect", data={"bot_id": str(alerts.id)})
                session_id = started.headers["location"].rsplit("/", 1)[1]
                view = await groups.get_session(rt, relay.workspace_id, session_id)
                assert view.links is not None
                await telegram.send_private(
                    alerts.id, ANN, f"/start {start_token(view.links.start_link)}"
                )

                async def verified() -> bool:
                    found = await groups.get_session(rt, relay.workspace_id, session_id)
                    return found.session.state is SessionState.WAITING_GROUP

                await eventually(verified)
            found = await groups.get_session(rt, relay.workspace_id, session_id)
            assert found.session.verified_at is not None
            # Every step above is less than a minute old: each time reads "5 min ago".
            clock.frozen = found.session.verified_at + timedelta(minutes=5)
            yield Scene(
                relay=relay,
                pages={
                    "login": "/ui/login",
                    "bots": "/ui/bots",
                    "updates": f"/ui/bots/{alerts.id}/updates",
                    "connections": "/ui/connections",
                    "notifications": f"/ui/connections/{connection.id}/notifications",
                    "connect": "/ui/connect",
                    "connect-phase-2": f"/ui/connect/{session_id}",
                    "endpoints": "/ui/endpoints",
                    "endpoint": f"/ui/endpoints/{created.endpoint.id}",
                    "delivery": f"/ui/deliveries/{delivery.public_id}",
                    "audit": "/ui/audit",
                    "api-keys": "/ui/api-keys",
                    "tickets": "/ui/tickets",
                    "ticket": f"/ui/tickets/{ticket}",
                    "desks": "/ui/desks",
                    "desk": f"/ui/desks/{desk}",
                    "agents": "/ui/agents",
                    "snippets": "/ui/snippets",
                    "snippet": f"/ui/snippets/{snippet}",
                    "articles": "/ui/articles",
                    "report": "/ui/report",
                    "flows": "/ui/flows",
                    "flow": "/ui/flows/billing-address",
                    "conversations": "/ui/conversations",
                },
            )


async def support_setup(
    relay: Tgrelay, emulator: RunningEmulator, bot: BotRecord, principal: Principal
) -> tuple[str, str]:
    """A desk on a "Help desk" forum, two agents, two snippets and three articles; the desk's
    and a snippet's ids."""
    rt = relay.runtime
    forum = await forum_connection(relay, emulator, bot, "Help desk")
    desk = await desks.create_desk(rt, principal, bot_id=bot.id, connection_id=forum)
    await agents.put_agent(
        rt, principal, 5002, name="Bob", external_id="E-17", capacity=5, active=True
    )
    await agents.put_agent(
        rt, principal, 5003, name="Cleo", external_id=None, capacity=None, active=False
    )
    refund = await snippets.create_snippet(
        rt,
        principal,
        name="refund",
        text="Hi {{ customer.first_name }}, your refund for ticket #{{ ticket.number }} "
        "is on its way. {{ agent.name }}, {{ desk.name }}",
    )
    await snippets.create_snippet(
        rt, principal, name="hours", text="We answer Monday to Friday, 9:00-18:00 CET."
    )
    await kb.create_article(
        rt,
        principal,
        title="Where is my parcel?",
        body="Track it with the link in your confirmation e-mail; parcels arrive in 2 to 4 days.",
        tags=["orders", "shipping"],
        language="en",
        auto_answer=True,
    )
    await kb.create_article(
        rt,
        principal,
        title="Refunds",
        body="A refund reaches your card within 5 working days of our confirmation.",
        tags=["billing"],
    )
    await kb.create_article(
        rt,
        principal,
        title="Versand nach Norwegen",
        body="Wir liefern nach Norwegen in 3 bis 5 Tagen.",
        tags=["shipping"],
        language="de",
    )
    return desk.id, refund.id


async def tickets_setup(
    relay: Tgrelay, emulator: RunningEmulator, bot: BotRecord, desk_id: str, principal: Principal
) -> str:
    """Three customers' tickets on the desk: Ada's (an edited message, an answer, a note,
    assigned to Bob, and an answer that failed as she blocked the bot), Ben's (new) and Cy's
    (answered and resolved); Ada's ticket's id."""
    rt, fake = relay.runtime, emulator.emulator
    desk = TicketDesk(id=desk_id, name="Help desk", bot=bot)
    typo = fake.send_message(bot.id, ADA, None, "My parcel #1042 never arived")
    ada = await customer_writes(relay, emulator, desk, ADA, "It was due on Monday.")
    fake.edit_message(
        bot.id, ADA, ADA["id"], typo["message"]["message_id"], "My parcel #1042 never arrived"
    )
    await customer_writes(relay, emulator, desk, BEN, "Can I change the size of my order?")
    cy = await customer_writes(relay, emulator, desk, CY, "Do you ship to Norway?")
    await support.post_message(rt, principal, ada.id, text="Sorry! A new parcel leaves today.")
    await support.post_message(
        rt, principal, ada.id, text="Warehouse confirmed the resend.", internal=True
    )
    await support.change_ticket(rt, principal, ada.id, assignee_id=5002)
    await support.post_message(rt, principal, cy.id, text="Yes, in 3 to 5 days.")
    await support.change_ticket(rt, principal, cy.id, status=TicketStatus.RESOLVED)
    await relayed(relay, ada.id, 4)
    fake.block_bot(ADA["id"], bot.id)
    await support.post_message(rt, principal, ada.id, text="Could you confirm your address?")
    await relayed(relay, ada.id, 5)
    await relayed(relay, cy.id, 2)

    async def edit_recorded() -> bool:
        found = await support.list_messages(rt, relay.workspace_id, ada.id)
        return bool(found[0].versions)

    await eventually(edit_recorded)
    return ada.id


async def flows_setup(relay: Tgrelay, principal: Principal) -> None:
    """The shipped billing-address flow (two versions) and an API-started survey, with four
    conversations: one waiting, one at the app, one completed and one timed out."""
    rt = relay.runtime
    # The flow's calls go to the team's app: an endpoint of that origin signs them.
    await events.create_endpoint(
        rt,
        principal,
        url="http://127.0.0.1:8765/events",
        event_types=["conversation.*"],
        description="Billing app",
    )
    billing = json.loads(BILLING_FLOW.read_text())
    await registry.post_flow(rt, principal, json.dumps(billing))
    billing["timeout_seconds"] = 1800
    await registry.post_flow(rt, principal, json.dumps(billing))
    survey = {
        "name": "survey",
        "trigger": {"type": "api"},
        "steps": [
            {
                "id": "score",
                "kind": "ask",
                "message": "How likely are you to recommend us, 0 to 10?",
                "input": {"type": "number", "min": 0, "max": 10, "integer": True},
                "variable": "score",
            },
            {"id": "thanks", "kind": "end", "message": "Thank you!"},
        ],
    }
    await registry.post_flow(rt, principal, json.dumps(survey))
    now = rt.clock()
    for minutes, conversation_id, flow, user_id, step, status, reason in [
        (40, "cnv_1", "survey", 7101, "thanks", Status.COMPLETED, None),
        (30, "cnv_2", "billing-address", 7102, "zip", Status.ABANDONED, AbandonReason.TIMEOUT),
        (3, "cnv_3", "billing-address", 7103, "validate", Status.CALLING, None),
        (1, "cnv_4", "billing-address", 7104, "city", Status.ACTIVE, None),
    ]:
        await write_conversation(
            rt.db,
            relay.workspace_id,
            conversation_id,
            started_at=now - timedelta(minutes=minutes),
            flow=flow,
            user_id=user_id,
            step=step,
            status=status,
            reason=reason,
        )


async def sign_in(page: Page, relay: Tgrelay) -> None:
    await page.goto(f"{relay.base_url}/ui/login")
    await page.fill("#api_key", relay.api_key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{relay.base_url}/ui/connections")


async def test_every_page_fits_a_phone_and_is_pictured(scene: Scene, page: Page) -> None:
    """Each page, the sign-in page included, is no wider than a 390 px phone screen, and its picture in docs/ui/ is written again from the page as it is now."""
    relay = scene.relay
    await page.goto(f"{relay.base_url}/ui/login")
    await page.set_viewport_size({"width": PHONE_WIDTH, "height": 844})
    widths: dict[str, int] = {}
    for name, path in scene.pages.items():
        if name == "bots":  # the sign-in page was measured signed out; the rest signed in
            await sign_in(page, relay)
        await page.goto(f"{relay.base_url}{path}")
        widths[name] = await page.evaluate("document.documentElement.scrollWidth")
        if name == "bots":
            await page.evaluate(STEADY_SCRIPT, STAND_INS)
            await page.screenshot(path=DOCS / "bots-phone.png", full_page=True)

    DOCS.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size(DESKTOP)
    written = []
    for name, path in scene.pages.items():
        await page.goto(f"{relay.base_url}{path}")
        await page.evaluate(STEADY_SCRIPT, STAND_INS)
        await page.mouse.move(0, 0)
        await page.screenshot(path=DOCS / f"{name}.png", full_page=True)
        written.append(name)

    assert {name: width for name, width in widths.items() if width > PHONE_WIDTH} == {}
    assert sorted(p.stem for p in DOCS.glob("*.png")) == sorted([*written, "bots-phone"])
    assert re.search("Now add @alerts_bot to your group", await _text(page, relay, scene))


async def _text(page: Page, relay: Tgrelay, scene: Scene) -> str:
    await page.goto(f"{relay.base_url}{scene.pages['connect-phase-2']}")
    return await page.inner_text("main")
