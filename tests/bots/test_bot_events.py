"""The bots domain's events, as a subscribed endpoint is sent them: health changes and
disconnects each announce themselves with the bot's identity and what changed."""

from __future__ import annotations

from tests.events.watching import sent, typed, watch
from tgrelay.bots import service

from .bench import Bench

FOREIGN_URL = "https://other-service.example/hook"


async def test_a_connect_is_announced_as_bot_connected(polling: Bench) -> None:
    """Connecting a bot sends bot.connected with its identity, mode and status."""
    tenant = await polling.tenant("Acme")
    watcher = await watch(polling.rt, tenant.principal, "bot.*")
    bot = await polling.new_bot("acme_bot")

    await service.connect(polling.rt, tenant.principal, bot["token"])

    assert typed(await sent(polling.rt, tenant.workspace_id, watcher)) == [
        (
            "bot.connected",
            {"bot_id": bot["id"], "username": "acme_bot", "mode": "polling", "status": "healthy"},
        )
    ]


async def test_a_health_change_is_announced_as_bot_status_changed(webhook: Bench) -> None:
    """A health check that finds another service's webhook sends bot.status_changed saying
    from what to what, of which kind and why."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, tenant.principal, bot["token"])
    watcher = await watch(webhook.rt, tenant.principal, "bot.*")
    await webhook.set_foreign_webhook(bot["id"], FOREIGN_URL)
    webhook.clock.advance(30)

    await service.check_health(webhook.rt, bot["id"])

    bodies = await sent(webhook.rt, tenant.workspace_id, watcher)
    assert typed(bodies) == [
        (
            "bot.status_changed",
            {
                "bot_id": bot["id"],
                "username": "acme_bot",
                "status": "webhook_conflict",
                "previous_status": "healthy",
                "conflict_kind": "foreign",
                "reason": "another service's webhook is registered instead of ours",
            },
        )
    ]
    assert [body["version"] for body in bodies] == [1]


async def test_a_disconnect_is_announced_as_bot_disconnected(webhook: Bench) -> None:
    """Disconnecting sends bot.disconnected (not a status change) with the bot and its mode."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, tenant.principal, bot["token"])
    watcher = await watch(webhook.rt, tenant.principal, "bot.*")

    await service.disconnect(webhook.rt, tenant.principal, bot["id"])

    assert typed(await sent(webhook.rt, tenant.workspace_id, watcher)) == [
        (
            "bot.disconnected",
            {
                "bot_id": bot["id"],
                "username": "acme_bot",
                "mode": "webhook",
                "status": "disconnected",
            },
        )
    ]
