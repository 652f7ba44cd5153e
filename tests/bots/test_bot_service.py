"""The bots use cases against a real SQLite database and the emulated Bot API."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime, timedelta
from typing import Any

import pytest

from tgrelay import errors
from tgrelay.bots import service
from tgrelay.bots.models import BotMode, BotStatus, ConflictKind, ConnectedBot
from tgrelay.crypto import token_fingerprint
from tgrelay.telegram.updates import ALLOWED_UPDATES

from .bench import GRACE_SECONDS, PUBLIC_URL, START, AuditRow, Bench, BenchFactory, Tenant

FOREIGN_URL = "https://other-service.example/hook"


def connected(
    bot: dict[str, Any],
    tenant: Tenant,
    *,
    token: str | None = None,
    mode: BotMode,
    status: BotStatus = BotStatus.HEALTHY,
    conflict_kind: ConflictKind | None = None,
    generation: int = 1,
    valid_until: datetime | None = None,
    last_checked_at: datetime | None = None,
    updated_at: datetime = START,
) -> ConnectedBot:
    """The record expected for an emulator bot connected by `tenant`."""
    return ConnectedBot(
        id=bot["id"],
        workspace_id=tenant.workspace_id,
        username=bot["username"],
        first_name=bot["first_name"],
        token_fingerprint=token_fingerprint(token or bot["token"]),
        mode=mode,
        status=status,
        conflict_kind=conflict_kind,
        secret_generation=generation,
        previous_secret_valid_until=valid_until,
        webhook_url=f"{PUBLIC_URL}/telegram/{bot['id']}" if mode is BotMode.WEBHOOK else None,
        last_error_message=None,
        last_error_at=None,
        last_checked_at=last_checked_at,
        connected_since=START,
        created_at=START,
        updated_at=updated_at,
    )


def connect_rows(bot: dict[str, Any], tenant: Tenant, mode: BotMode) -> list[AuditRow]:
    """The audit rows a first connect writes."""
    return [
        AuditRow(
            action="bot.connected",
            actor=tenant.principal.actor,
            workspace_id=tenant.workspace_id,
            detail={
                "username": bot["username"],
                "mode": mode,
                "token_fingerprint": token_fingerprint(bot["token"]),
                "secret_generation": 1,
            },
        ),
        status_row(tenant, None, BotStatus.HEALTHY, "connected", actor=tenant.principal.actor),
    ]


def status_row(
    tenant: Tenant,
    old: BotStatus | None,
    new: BotStatus,
    reason: str,
    *,
    actor: str = "system",
    old_kind: ConflictKind | None = None,
    kind: ConflictKind | None = None,
) -> AuditRow:
    return AuditRow(
        action="bot.status_changed",
        actor=actor,
        workspace_id=tenant.workspace_id,
        detail={
            "old": old,
            "new": new,
            "old_conflict_kind": old_kind,
            "conflict_kind": kind,
            "reason": reason,
        },
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- connect ------------------------------------------------------------------------------


async def test_connect_in_polling_mode_removes_any_webhook(polling: Bench) -> None:
    """Polling mode stores the bot healthy and deletes a leftover webhook so getUpdates works."""
    tenant = await polling.tenant("Acme")
    bot = await polling.new_bot("acme_bot")
    await polling.set_foreign_webhook(bot["id"], FOREIGN_URL)

    result = await service.connect(polling.rt, tenant.principal, bot["token"])

    assert result == connected(bot, tenant, mode=BotMode.POLLING)
    assert (await polling.emulated(bot["id"]))["webhook"] is None
    assert await polling.audit_rows(bot["id"]) == connect_rows(bot, tenant, BotMode.POLLING)


async def test_connect_in_webhook_mode_registers_our_webhook(webhook: Bench) -> None:
    """Webhook mode registers our URL, the derived secret and the update types we need."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")

    result = await service.connect(webhook.rt, tenant.principal, bot["token"])

    secrets = webhook.rt.cipher.webhook_secrets(bot["id"], 1)
    assert result == connected(bot, tenant, mode=BotMode.WEBHOOK)
    assert (await webhook.emulated(bot["id"]))["webhook"] == {
        "url": f"{PUBLIC_URL}/telegram/{bot['id']}",
        "secret_token": secrets[0],
        "max_connections": 40,
        "allowed_updates": list(ALLOWED_UPDATES),
    }
    assert "my_chat_member" in ALLOWED_UPDATES
    assert await service.intake_credentials(webhook.rt, bot["id"]) == service.IntakeCredentials(
        bot_id=bot["id"], workspace_id=tenant.workspace_id, secrets=tuple(secrets)
    )
    assert await webhook.audit_rows(bot["id"]) == connect_rows(bot, tenant, BotMode.WEBHOOK)


async def test_connect_stores_the_token_only_encrypted(polling: Bench) -> None:
    """The token is stored as ciphertext and a fingerprint; audit rows never contain it."""
    tenant = await polling.tenant("Acme")
    bot = await polling.new_bot("acme_bot")

    await service.connect(polling.rt, tenant.principal, bot["token"])

    row = await polling.stored(bot["id"])
    secret_part = bot["token"].partition(":")[2]
    assert secret_part not in row.token_ciphertext
    assert polling.rt.cipher.decrypt(row.token_ciphertext) == bot["token"]
    assert row.token_fingerprint == token_fingerprint(bot["token"])
    assert await service.token_of(polling.rt, bot["id"]) == bot["token"]
    assert secret_part not in repr(await polling.audit_rows(bot["id"]))


async def test_connect_with_a_revoked_token_is_refused(polling: Bench) -> None:
    """A token Telegram refuses is TelegramUnauthorized with a clear message; nothing is stored."""
    tenant = await polling.tenant("Acme")
    bot = await polling.new_bot("acme_bot")
    await polling.revoke(bot["id"])

    with pytest.raises(errors.TelegramUnauthorized) as refused:
        await service.connect(polling.rt, tenant.principal, bot["token"])

    assert refused.value.message == (
        "Telegram refused this token: it is invalid or was revoked in @BotFather"
    )
    assert await service.list_bots(polling.rt, tenant.workspace_id) == []


async def test_a_bot_connected_elsewhere_cannot_be_connected(polling: Bench) -> None:
    """A bot connected in one workspace is a Conflict for another, and stays where it was."""
    first, second = await polling.tenant("First"), await polling.tenant("Second")
    bot = await polling.new_bot("acme_bot")
    before = await service.connect(polling.rt, first.principal, bot["token"])

    with pytest.raises(errors.Conflict, match="connected to another workspace"):
        await service.connect(polling.rt, second.principal, bot["token"])

    assert await service.get_bot(polling.rt, first.workspace_id, bot["id"]) == before
    assert await service.list_bots(polling.rt, second.workspace_id) == []


async def test_a_disconnected_bot_can_move_to_another_workspace(webhook: Bench) -> None:
    """Once disconnected, a bot can be connected by another workspace under a new secret."""
    first, second = await webhook.tenant("First"), await webhook.tenant("Second")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, first.principal, bot["token"])
    await service.disconnect(webhook.rt, first.principal, bot["id"])

    result = await service.connect(webhook.rt, second.principal, bot["token"])

    assert result == connected(bot, second, mode=BotMode.WEBHOOK, generation=2)
    assert await service.list_bots(webhook.rt, first.workspace_id) == []
    hook = (await webhook.emulated(bot["id"]))["webhook"]
    assert hook["secret_token"] == webhook.rt.cipher.webhook_secrets(bot["id"], 2)[0]


async def test_reconnecting_a_disconnected_bot_reactivates_it(webhook: Bench) -> None:
    """Reconnecting brings the bot back healthy under a new generation; old secrets are void."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, tenant.principal, bot["token"])
    await service.disconnect(webhook.rt, tenant.principal, bot["id"])
    webhook.clock.advance(60)

    result = await service.connect(webhook.rt, tenant.principal, bot["token"])

    later = START + timedelta(seconds=60)
    new_secrets = webhook.rt.cipher.webhook_secrets(bot["id"], 2)
    assert result == connected(bot, tenant, mode=BotMode.WEBHOOK, generation=2, updated_at=later)
    assert (await webhook.emulated(bot["id"]))["webhook"]["secret_token"] == new_secrets[0]
    assert await service.intake_credentials(webhook.rt, bot["id"]) == service.IntakeCredentials(
        bot_id=bot["id"], workspace_id=tenant.workspace_id, secrets=tuple(new_secrets)
    )
    actor = tenant.principal.actor
    assert [(row.action, row.detail.get("new")) for row in await webhook.audit_rows(bot["id"])] == [
        ("bot.connected", None),
        ("bot.status_changed", BotStatus.HEALTHY),
        ("bot.disconnected", None),
        ("bot.status_changed", BotStatus.DISCONNECTED),
        ("bot.connected", None),
        ("bot.status_changed", BotStatus.HEALTHY),
    ]
    assert (await webhook.audit_rows(bot["id"]))[-1] == status_row(
        tenant, BotStatus.DISCONNECTED, BotStatus.HEALTHY, "connected", actor=actor
    )


async def test_connecting_again_repairs_a_conflicted_webhook(webhook: Bench) -> None:
    """Connecting an active bot again registers our webhook again and makes it healthy."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, tenant.principal, bot["token"])
    await webhook.set_foreign_webhook(bot["id"], FOREIGN_URL)
    await service.check_health(webhook.rt, bot["id"])

    result = await service.connect(webhook.rt, tenant.principal, bot["token"])

    assert result == connected(bot, tenant, mode=BotMode.WEBHOOK, last_checked_at=START)
    hook = (await webhook.emulated(bot["id"]))["webhook"]
    assert (hook["url"], hook["secret_token"]) == (
        f"{PUBLIC_URL}/telegram/{bot['id']}",
        webhook.rt.cipher.webhook_secrets(bot["id"], 1)[0],
    )


# --- reading ------------------------------------------------------------------------------


async def test_another_workspace_sees_no_bot(polling: Bench) -> None:
    """get_bot answers NotFound for another workspace's bot exactly as for a missing id."""
    owner, other = await polling.tenant("Owner"), await polling.tenant("Other")
    bot = await polling.new_bot("acme_bot")
    await service.connect(polling.rt, owner.principal, bot["token"])

    with pytest.raises(errors.NotFound) as foreign:
        await service.get_bot(polling.rt, other.workspace_id, bot["id"])
    with pytest.raises(errors.NotFound) as missing:
        await service.get_bot(polling.rt, other.workspace_id, bot["id"] + 1)

    assert foreign.value.message == f"no bot {bot['id']} in this workspace"
    assert missing.value.message == f"no bot {bot['id'] + 1} in this workspace"
    assert await service.list_bots(polling.rt, other.workspace_id) == []


async def test_polling_bots_are_the_polling_bots_worth_polling(make_bench: BenchFactory) -> None:
    """polling_bots lists polling-mode bots that are neither disconnected nor revoked."""
    polling = await make_bench(public_url=None)
    webhook = await make_bench(public_url=PUBLIC_URL)
    tenant = await polling.tenant("Acme")
    healthy, conflicted, revoked, gone, pushed = [
        await polling.new_bot(f"bot{n}_bot") for n in range(5)
    ]
    for bot in (healthy, conflicted, revoked, gone):
        await service.connect(polling.rt, tenant.principal, bot["token"])
    await service.connect(webhook.rt, tenant.principal, pushed["token"])
    await service.record_status(
        polling.rt,
        conflicted["id"],
        BotStatus.WEBHOOK_CONFLICT,
        reason="getUpdates answered 409",
        conflict_kind=ConflictKind.FOREIGN,
    )
    await service.record_status(
        polling.rt, revoked["id"], BotStatus.TOKEN_REVOKED, reason="getUpdates answered 401"
    )
    await service.disconnect(polling.rt, tenant.principal, gone["id"])

    found = await service.polling_bots(polling.rt)

    assert found == sorted(
        [
            service.PollingBot(bot_id=healthy["id"], token=healthy["token"]),
            service.PollingBot(bot_id=conflicted["id"], token=conflicted["token"]),
        ],
        key=lambda bot: bot.bot_id,
    )


async def test_intake_credentials_of_an_unknown_bot(polling: Bench) -> None:
    """There are no intake credentials for a bot nobody connected."""
    assert await service.intake_credentials(polling.rt, 123456) is None


# --- rotate -------------------------------------------------------------------------------


async def test_rotation_keeps_the_previous_secret_during_the_grace(webhook: Bench) -> None:
    """A new token moves to the next secret; the previous one is accepted until the grace ends."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, tenant.principal, bot["token"])
    new_token = await webhook.rotate(bot["id"])

    result = await service.rotate_token(webhook.rt, tenant.principal, bot["id"], new_token)

    cipher = webhook.rt.cipher
    grace_end = START + timedelta(seconds=GRACE_SECONDS)
    assert result == connected(
        bot, tenant, token=new_token, mode=BotMode.WEBHOOK, generation=2, valid_until=grace_end
    )
    assert (await webhook.emulated(bot["id"]))["webhook"]["secret_token"] == (
        cipher.webhook_secrets(bot["id"], 2)[0]
    )
    assert await service.token_of(webhook.rt, bot["id"]) == new_token
    new, old = cipher.webhook_secrets(bot["id"], 2), cipher.webhook_secrets(bot["id"], 1)
    webhook.clock.advance(GRACE_SECONDS - 1)
    during_grace = await service.intake_credentials(webhook.rt, bot["id"])
    webhook.clock.advance(1)
    after_grace = await service.intake_credentials(webhook.rt, bot["id"])
    assert (during_grace, after_grace) == (
        service.IntakeCredentials(
            bot_id=bot["id"], workspace_id=tenant.workspace_id, secrets=(*new, *old)
        ),
        service.IntakeCredentials(
            bot_id=bot["id"], workspace_id=tenant.workspace_id, secrets=tuple(new)
        ),
    )
    assert (await webhook.audit_rows(bot["id"]))[2:] == [
        AuditRow(
            action="bot.token_rotated",
            actor=tenant.principal.actor,
            workspace_id=tenant.workspace_id,
            detail={
                "old_token_fingerprint": token_fingerprint(bot["token"]),
                "new_token_fingerprint": token_fingerprint(new_token),
                "secret_generation": 2,
                "previous_secret_valid_until": grace_end.isoformat(),
            },
        )
    ]
    checked = await service.check_health(webhook.rt, bot["id"])
    assert checked.status is BotStatus.HEALTHY


async def test_rotation_with_another_bots_token_is_refused(webhook: Bench) -> None:
    """A token of a different bot is InvalidInput and changes nothing."""
    tenant = await webhook.tenant("Acme")
    bot, other = await webhook.new_bot("acme_bot"), await webhook.new_bot("other_bot")
    before = await service.connect(webhook.rt, tenant.principal, bot["token"])
    hook_before = (await webhook.emulated(bot["id"]))["webhook"]

    with pytest.raises(errors.InvalidInput) as refused:
        await service.rotate_token(webhook.rt, tenant.principal, bot["id"], other["token"])

    assert refused.value.message == "the new token belongs to another bot"
    assert await service.get_bot(webhook.rt, tenant.workspace_id, bot["id"]) == before
    assert await service.token_of(webhook.rt, bot["id"]) == bot["token"]
    assert (await webhook.emulated(bot["id"]))["webhook"] == hook_before
    assert (await webhook.emulated(other["id"]))["webhook"] is None


async def test_rotation_heals_a_revoked_polling_bot(polling: Bench) -> None:
    """After a revocation, the new token makes a polling bot healthy again, same generation."""
    tenant = await polling.tenant("Acme")
    bot = await polling.new_bot("acme_bot")
    await service.connect(polling.rt, tenant.principal, bot["token"])
    await polling.revoke(bot["id"])
    await service.check_health(polling.rt, bot["id"])
    new_token = await polling.rotate(bot["id"])

    result = await service.rotate_token(polling.rt, tenant.principal, bot["id"], new_token)

    assert result == connected(
        bot, tenant, token=new_token, mode=BotMode.POLLING, last_checked_at=START
    )
    assert [(row.action, row.detail.get("new")) for row in await polling.audit_rows(bot["id"])][
        2:
    ] == [
        ("bot.status_changed", BotStatus.TOKEN_REVOKED),
        ("bot.token_rotated", None),
        ("bot.status_changed", BotStatus.HEALTHY),
    ]
    assert await service.polling_bots(polling.rt) == [
        service.PollingBot(bot_id=bot["id"], token=new_token)
    ]


# --- disconnect ---------------------------------------------------------------------------


async def test_disconnect_deletes_our_webhook(webhook: Bench) -> None:
    """Disconnecting deletes our webhook, stops the intake and is audited."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, tenant.principal, bot["token"])

    result = await service.disconnect(webhook.rt, tenant.principal, bot["id"])

    assert result == connected(bot, tenant, mode=BotMode.WEBHOOK, status=BotStatus.DISCONNECTED)
    assert (await webhook.emulated(bot["id"]))["webhook"] is None
    assert await service.intake_credentials(webhook.rt, bot["id"]) is None
    actor = tenant.principal.actor
    assert (await webhook.audit_rows(bot["id"]))[2:] == [
        AuditRow(
            action="bot.disconnected",
            actor=actor,
            workspace_id=tenant.workspace_id,
            detail={"mode": BotMode.WEBHOOK},
        ),
        status_row(
            tenant,
            BotStatus.HEALTHY,
            BotStatus.DISCONNECTED,
            "disconnected by the workspace",
            actor=actor,
        ),
    ]


async def test_disconnect_works_with_a_revoked_token(webhook: Bench) -> None:
    """A token Telegram refuses does not block disconnecting."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, tenant.principal, bot["token"])
    await webhook.revoke(bot["id"])

    result = await service.disconnect(webhook.rt, tenant.principal, bot["id"])

    assert result == connected(bot, tenant, mode=BotMode.WEBHOOK, status=BotStatus.DISCONNECTED)
    assert await service.intake_credentials(webhook.rt, bot["id"]) is None


async def test_disconnect_leaves_a_foreign_webhook_alone(webhook: Bench) -> None:
    """Another service's webhook is not ours to delete."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, tenant.principal, bot["token"])
    await webhook.set_foreign_webhook(bot["id"], FOREIGN_URL)

    await service.disconnect(webhook.rt, tenant.principal, bot["id"])

    assert (await webhook.emulated(bot["id"]))["webhook"]["url"] == FOREIGN_URL


async def test_disconnecting_twice_changes_nothing(polling: Bench) -> None:
    """A second disconnect returns the same bot and writes no audit row."""
    tenant = await polling.tenant("Acme")
    bot = await polling.new_bot("acme_bot")
    await service.connect(polling.rt, tenant.principal, bot["token"])
    first = await service.disconnect(polling.rt, tenant.principal, bot["id"])
    rows = await polling.audit_rows(bot["id"])
    polling.clock.advance(5)

    second = await service.disconnect(polling.rt, tenant.principal, bot["id"])

    assert second == first
    assert await polling.audit_rows(bot["id"]) == rows


# --- health -------------------------------------------------------------------------------


async def test_health_check_of_a_healthy_bot_only_notes_the_time(webhook: Bench) -> None:
    """A bot found as expected stays healthy; only last_checked_at moves, nothing is audited."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await service.connect(webhook.rt, tenant.principal, bot["token"])
    checked_at = webhook.clock.advance(30)

    result = await service.check_health(webhook.rt, bot["id"])

    assert result == connected(bot, tenant, mode=BotMode.WEBHOOK, last_checked_at=checked_at)
    assert await webhook.audit_rows(bot["id"]) == connect_rows(bot, tenant, BotMode.WEBHOOK)


@pytest.mark.parametrize(
    ("public_url", "disturb", "status", "kind", "reason"),
    [
        (
            PUBLIC_URL,
            "revoke",
            BotStatus.TOKEN_REVOKED,
            None,
            "Telegram refused the token (401): it was revoked or replaced",
        ),
        (
            None,
            "revoke",
            BotStatus.TOKEN_REVOKED,
            None,
            "Telegram refused the token (401): it was revoked or replaced",
        ),
        (
            PUBLIC_URL,
            "foreign",
            BotStatus.WEBHOOK_CONFLICT,
            ConflictKind.FOREIGN,
            "another service's webhook is registered instead of ours",
        ),
        (
            PUBLIC_URL,
            "delete",
            BotStatus.WEBHOOK_CONFLICT,
            ConflictKind.EMPTY,
            "no webhook is registered, so Telegram delivers nothing to us",
        ),
        (
            None,
            "foreign",
            BotStatus.WEBHOOK_CONFLICT,
            ConflictKind.FOREIGN,
            "a webhook is registered, so Telegram refuses getUpdates",
        ),
    ],
)
async def test_health_check_detects_trouble(
    make_bench: BenchFactory,
    public_url: str | None,
    disturb: str,
    status: BotStatus,
    kind: ConflictKind | None,
    reason: str,
) -> None:
    """Revocation, a foreign webhook and a deleted webhook each become a status, audited."""
    bench = await make_bench(public_url=public_url)
    mode = BotMode.WEBHOOK if public_url else BotMode.POLLING
    tenant = await bench.tenant("Acme")
    bot = await bench.new_bot("acme_bot")
    await service.connect(bench.rt, tenant.principal, bot["token"])
    match disturb:
        case "revoke":
            await bench.revoke(bot["id"])
        case "foreign":
            await bench.set_foreign_webhook(bot["id"], FOREIGN_URL)
        case "delete":
            await bench.delete_webhook(bot["id"])
    checked_at = bench.clock.advance(30)

    result = await service.check_health(bench.rt, bot["id"])

    assert result == connected(
        bot,
        tenant,
        mode=mode,
        status=status,
        conflict_kind=kind,
        last_checked_at=checked_at,
        updated_at=checked_at,
    )
    assert await bench.audit_rows(bot["id"]) == [
        *connect_rows(bot, tenant, mode),
        status_row(tenant, BotStatus.HEALTHY, status, reason, kind=kind),
    ]
    again = await service.check_health(bench.rt, bot["id"])
    assert (again.status, again.conflict_kind) == (status, kind)
    assert len(await bench.audit_rows(bot["id"])) == 3


async def test_health_check_records_telegrams_last_webhook_error(
    make_bench: BenchFactory,
) -> None:
    """Telegram's last delivery error and its time are stored by the health check."""
    unreachable = f"http://127.0.0.1:{closed_port()}"
    bench = await make_bench(public_url=unreachable)
    tenant = await bench.tenant("Acme")
    bot = await bench.new_bot("acme_bot")
    await service.connect(bench.rt, tenant.principal, bot["token"])
    await bench.control.post(
        "/_emulator/updates",
        json={"bot_id": bot["id"], "from": {"id": 42, "first_name": "Ann"}, "text": "hello"},
    )
    async with asyncio.timeout(10):
        while "last_error_message" not in bench.telegram.emulator.webhook_info(bot["id"]):
            await asyncio.sleep(0.01)
    info = bench.telegram.emulator.webhook_info(bot["id"])

    result = await service.check_health(bench.rt, bot["id"])

    assert (result.status, result.last_error_message) == (
        BotStatus.HEALTHY,
        info["last_error_message"],
    )
    assert result.last_error_at is not None
    assert int(result.last_error_at.timestamp()) == info["last_error_date"]


async def test_health_check_without_telegram_changes_nothing(
    make_bench: BenchFactory,
) -> None:
    """When Telegram cannot be reached the bot keeps its status and last_checked_at."""
    bench = await make_bench(public_url=PUBLIC_URL)
    offline = await make_bench(public_url=PUBLIC_URL, api_url=f"http://127.0.0.1:{closed_port()}")
    tenant = await bench.tenant("Acme")
    bot = await bench.new_bot("acme_bot")
    before = await service.connect(bench.rt, tenant.principal, bot["token"])
    bench.clock.advance(30)

    result = await service.check_health(offline.rt, bot["id"])

    assert result == before
    assert await service.get_bot(bench.rt, tenant.workspace_id, bot["id"]) == before
    assert await bench.audit_rows(bot["id"]) == connect_rows(bot, tenant, BotMode.WEBHOOK)


async def test_health_check_leaves_a_disconnected_bot_alone(polling: Bench) -> None:
    """A disconnected bot is not checked, so it stays disconnected."""
    tenant = await polling.tenant("Acme")
    bot = await polling.new_bot("acme_bot")
    await service.connect(polling.rt, tenant.principal, bot["token"])
    disconnected = await service.disconnect(polling.rt, tenant.principal, bot["id"])
    await polling.revoke(bot["id"])

    assert await service.check_health(polling.rt, bot["id"]) == disconnected


# --- record_status ------------------------------------------------------------------------


async def test_record_status_writes_only_changes(polling: Bench) -> None:
    """record_status stores and audits a new status once, and never revives a disconnected bot."""
    tenant = await polling.tenant("Acme")
    bot = await polling.new_bot("acme_bot")
    await service.connect(polling.rt, tenant.principal, bot["token"])
    reason = "getUpdates answered 401"

    changes = [
        await service.record_status(polling.rt, bot["id"], BotStatus.TOKEN_REVOKED, reason=reason),
        await service.record_status(polling.rt, bot["id"], BotStatus.TOKEN_REVOKED, reason=reason),
    ]
    await service.disconnect(polling.rt, tenant.principal, bot["id"])
    revived = await service.record_status(
        polling.rt, bot["id"], BotStatus.HEALTHY, reason="getUpdates answered"
    )

    assert (changes, revived) == ([True, False], False)
    bot_now = await service.get_bot(polling.rt, tenant.workspace_id, bot["id"])
    assert bot_now.status is BotStatus.DISCONNECTED
    assert (await polling.audit_rows(bot["id"]))[2] == status_row(
        tenant, BotStatus.HEALTHY, BotStatus.TOKEN_REVOKED, reason
    )
    assert [row.action for row in await polling.audit_rows(bot["id"])] == [
        "bot.connected",
        "bot.status_changed",
        "bot.status_changed",
        "bot.disconnected",
        "bot.status_changed",
    ]
