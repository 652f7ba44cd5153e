"""Use cases for bots: connect, rotate the token, disconnect, check health.

The only module that combines the database, the Bot API and the audit trail for bots
(`bots.store` holds the SQL). The intake and the poller read what they need through
`intake_credentials`, `polling_bots`, `token_of` and report what they see through
`record_status`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit, crypto, errors, hooks
from tgrelay.bots import rules, store
from tgrelay.bots.models import BotMode, BotStatus, ConflictKind, ConnectedBot, HoldChanged, Holding
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.runtime import Runtime
from tgrelay.telegram import client as telegram
from tgrelay.telegram import updates as telegram_updates
from tgrelay.workspaces import models as workspaces

if TYPE_CHECKING:
    from aiogram.types import WebhookInfo

log = structlog.get_logger(__name__)

TAKEN_OVER = "taken over"  # the reason of a disconnect by another workspace's connect

# Told, in the connecting or disconnecting transaction, that a workspace holds a bot again or
# no longer does (groups suspends and resumes the bot's connections; tgrelay.wiring adds it).
HoldListener = Callable[[AsyncConnection, Runtime, HoldChanged], Awaitable[None]]
HOLD_CHANGED: hooks.Key[HoldListener] = hooks.Key("bots.hold_changed")


@dataclass(frozen=True, kw_only=True)
class IntakeCredentials:
    """What the webhook receiver needs to accept a push for one bot."""

    bot_id: int
    workspace_id: str
    secrets: tuple[str, ...]  # every accepted X-Telegram-Bot-Api-Secret-Token value


@dataclass(frozen=True, kw_only=True)
class PollingBot:
    """A bot the poller should run getUpdates for."""

    bot_id: int
    token: str


# --- the workspace's use cases (HTTP API) -------------------------------------------------


async def connect(
    rt: Runtime, principal: workspaces.Principal, token: str, *, take_over: bool = False
) -> ConnectedBot:
    """Connect a bot by its token, or reconnect one this workspace connected before.

    A bot connected in another workspace is refused unless `take_over`: then it leaves that
    workspace (disconnected, "taken over"). Whenever the bot changes workspace, the one it
    leaves keeps its connections suspended and the new one sees only updates from now on.
    Telegram is told first (setWebhook in webhook mode, deleteWebhook in polling mode so
    getUpdates works); the row is written only once Telegram agreed.
    """
    client = rt.telegram.for_token(token)
    identity = await _identify(client)
    async with rt.db.engine.connect() as conn:
        existing = await store.load(conn, identity.id)
    _check_connectable(existing, principal.workspace_id, take_over=take_over)
    mode = BotMode.WEBHOOK if rt.settings.uses_webhooks else BotMode.POLLING
    generation, grace_end = _generation_on_connect(existing, principal.workspace_id)
    await _register(rt, client, identity.id, mode, generation)

    now = rt.clock()
    values: dict[str, Any] = {
        "workspace_id": principal.workspace_id,
        "username": identity.username,
        "first_name": identity.first_name,
        "token_ciphertext": rt.cipher.encrypt(token),
        "token_fingerprint": crypto.token_fingerprint(token),
        "mode": mode,
        "status": BotStatus.HEALTHY,
        "conflict_kind": None,
        "secret_generation": generation,
        "previous_secret_valid_until": grace_end,
        "updated_at": now,
    }
    old_token: str | None = None
    taken_from: str | None = None
    try:
        async with rt.db.transaction() as conn:
            row = await store.load(conn, identity.id, for_update=True)
            _check_connectable(row, principal.workspace_id, take_over=take_over)
            if row is None:
                await store.add(
                    conn,
                    {"id": identity.id, "created_at": now, "connected_since": now, **values},
                )
                old: store.StatusPair = (None, None)
            elif row.workspace_id != principal.workspace_id:
                taken_from = str(row.workspace_id)
                await _release(conn, rt, store.to_bot(rt.settings, row), now=now)
                await store.change(conn, identity.id, {**values, "connected_since": now})
                old = (BotStatus.DISCONNECTED, None)
                old_token = rt.cipher.decrypt(row.token_ciphertext)
            else:
                await store.change(conn, identity.id, values)
                old = store.status_of(row)
                old_token = rt.cipher.decrypt(row.token_ciphertext)
            await audit.record(
                conn,
                action="bot.connected",
                actor=principal.actor,
                now=now,
                workspace_id=principal.workspace_id,
                bot_id=identity.id,
                detail={
                    "username": identity.username,
                    "mode": mode,
                    "token_fingerprint": values["token_fingerprint"],
                    "secret_generation": generation,
                    # Only when the bot came from another workspace (whose id stays out):
                    # its history before now is not this workspace's.
                    **({"changed_workspace": True} if taken_from is not None else {}),
                },
            )
            if old != (BotStatus.HEALTHY, None):
                await store.audit_status(
                    conn,
                    bot_id=identity.id,
                    workspace_id=principal.workspace_id,
                    old=old,
                    new=(BotStatus.HEALTHY, None),
                    reason="connected",
                    actor=principal.actor,
                    now=now,
                )
            await _hold_changed(
                conn,
                rt,
                HoldChanged(
                    workspace_id=principal.workspace_id,
                    bot_id=identity.id,
                    held=True,
                    actor=principal.actor,
                    now=now,
                ),
            )
            bot = store.to_bot(rt.settings, await store.reload(conn, identity.id))
            await _emit_bot(conn, rt, EventType.BOT_CONNECTED, bot, bot.status, now=now)
    except IntegrityError as exc:
        # Another request inserted the same bot between our check and our insert.
        raise errors.Conflict("the bot is being connected by another request") from exc
    if old_token is not None and old_token != token:
        rt.telegram.forget(old_token)
    log.info(
        "bot.connected",
        bot_id=bot.id,
        workspace_id=bot.workspace_id,
        mode=mode,
        previous_workspace_id=taken_from,
    )
    return bot


async def reconnect(rt: Runtime, principal: workspaces.Principal, bot_id: int) -> ConnectedBot:
    """Connect a bot of this workspace again with the token it already has: registers our
    webhook over a foreign or missing one, or brings a disconnected bot back."""
    await get_bot(rt, principal.workspace_id, bot_id)  # another workspace's bot is absent
    return await connect(rt, principal, await token_of(rt, bot_id))


async def list_bots(rt: Runtime, workspace_id: str) -> list[ConnectedBot]:
    """Every bot of a workspace, disconnected ones included, oldest first."""
    async with rt.db.engine.connect() as conn:
        rows = await store.of_workspace(conn, workspace_id)
    return [store.to_bot(rt.settings, row) for row in rows]


async def get_bot(rt: Runtime, workspace_id: str, bot_id: int) -> ConnectedBot:
    """One bot of a workspace; another workspace's bot is as absent as a missing one."""
    async with rt.db.engine.connect() as conn:
        return store.to_bot(rt.settings, await store.in_workspace(conn, workspace_id, bot_id))


async def rotate_token(
    rt: Runtime, principal: workspaces.Principal, bot_id: int, new_token: str
) -> ConnectedBot:
    """Replace a bot's token (e.g. after /revoke in BotFather) without losing an update.

    In webhook mode the webhook is registered again under the next secret generation; the
    previous secret stays valid for `secret_grace_seconds`, because pushes already in
    flight at Telegram still carry it.
    """
    async with rt.db.engine.connect() as conn:
        row = await store.in_workspace(conn, principal.workspace_id, bot_id)
    if row.status == BotStatus.DISCONNECTED:
        raise errors.Conflict("the bot is disconnected; connect it again with its token")
    client = rt.telegram.for_token(new_token)
    identity = await _identify(client)
    if identity.id != bot_id:
        raise errors.InvalidInput("the new token belongs to another bot")
    bot = store.to_bot(rt.settings, row)
    now = rt.clock()
    generation, grace_end = bot.secret_generation, bot.previous_secret_valid_until
    if bot.mode is BotMode.WEBHOOK:
        generation += 1
        grace_end = now + timedelta(seconds=rt.settings.secret_grace_seconds)
        await _register(rt, client, bot_id, bot.mode, generation)
    old_token = rt.cipher.decrypt(row.token_ciphertext)
    fingerprint = crypto.token_fingerprint(new_token)

    async with rt.db.transaction() as conn:
        changed = await store.change(
            conn,
            bot_id,
            {
                "token_ciphertext": rt.cipher.encrypt(new_token),
                "token_fingerprint": fingerprint,
                "username": identity.username,
                "first_name": identity.first_name,
                "secret_generation": generation,
                "previous_secret_valid_until": grace_end,
                "updated_at": now,
            },
            if_generation=bot.secret_generation,
        )
        if not changed:
            raise errors.Conflict("the bot changed while its token was rotated; try again")
        await audit.record(
            conn,
            action="bot.token_rotated",
            actor=principal.actor,
            now=now,
            workspace_id=principal.workspace_id,
            bot_id=bot_id,
            detail={
                "old_token_fingerprint": bot.token_fingerprint,
                "new_token_fingerprint": fingerprint,
                "secret_generation": generation,
                "previous_secret_valid_until": grace_end,
            },
        )
        bot = store.to_bot(rt.settings, await store.reload(conn, bot_id))
        # The new token works (getMe said so) and, in webhook mode, our webhook is set again.
        if bot.status is BotStatus.TOKEN_REVOKED or bot.mode is BotMode.WEBHOOK:
            await _change_status(
                conn,
                rt,
                bot,
                (BotStatus.HEALTHY, None),
                reason="token rotated",
                actor=principal.actor,
                now=now,
            )
            bot = store.to_bot(rt.settings, await store.reload(conn, bot_id))
    if old_token != new_token:
        rt.telegram.forget(old_token)
    log.info("bot.token_rotated", bot_id=bot_id, secret_generation=generation)
    return bot


async def disconnect(rt: Runtime, principal: workspaces.Principal, bot_id: int) -> ConnectedBot:
    """Stop receiving a bot's updates; disconnecting a disconnected bot changes nothing.

    Our webhook is deleted at Telegram, but not another service's: a foreign webhook is
    left alone. A revoked token cannot delete anything, and must not block letting go.
    """
    async with rt.db.engine.connect() as conn:
        row = await store.in_workspace(conn, principal.workspace_id, bot_id)
    bot = store.to_bot(rt.settings, row)
    if bot.status is BotStatus.DISCONNECTED:
        return bot
    token = rt.cipher.decrypt(row.token_ciphertext)
    if bot.mode is BotMode.WEBHOOK:
        client = rt.telegram.for_token(token)
        try:
            info = await client.get_webhook_info()
            if info.url == bot.webhook_url:
                await client.delete_webhook()
            elif info.url:
                log.info("bot.foreign_webhook_kept", bot_id=bot_id)
        except errors.TelegramUnauthorized:
            log.info("bot.disconnect_token_refused", bot_id=bot_id)

    now = rt.clock()
    async with rt.db.transaction() as conn:
        current = await store.load(conn, bot_id, for_update=True)
        if current is None or current.workspace_id != principal.workspace_id:
            raise errors.NotFound(f"no bot {bot_id} in this workspace")
        current_bot = store.to_bot(rt.settings, current)
        if current_bot.status is not BotStatus.DISCONNECTED:
            await audit.record(
                conn,
                action="bot.disconnected",
                actor=principal.actor,
                now=now,
                workspace_id=principal.workspace_id,
                bot_id=bot_id,
                detail={"mode": current_bot.mode},
            )
            await _change_status(
                conn,
                rt,
                current_bot,
                (BotStatus.DISCONNECTED, None),
                reason="disconnected by the workspace",
                actor=principal.actor,
                now=now,
            )
            await _hold_changed(
                conn,
                rt,
                HoldChanged(
                    workspace_id=principal.workspace_id,
                    bot_id=bot_id,
                    held=False,
                    actor=principal.actor,
                    now=now,
                ),
            )
        bot = store.to_bot(rt.settings, await store.reload(conn, bot_id))
    rt.telegram.forget(token)
    log.info("bot.disconnected", bot_id=bot_id, workspace_id=principal.workspace_id)
    return bot


async def check_health(rt: Runtime, bot_id: int, *, actor: str = audit.SYSTEM) -> ConnectedBot:
    """Ask Telegram whether the token still works and our webhook is still ours.

    Disconnected bots are not checked. When Telegram cannot be reached nothing is decided
    (an outage is not the bot's fault) and `last_checked_at` stays, so the next round of
    the scheduler tries again.
    """
    async with rt.db.engine.connect() as conn:
        row = await store.load(conn, bot_id)
    if row is None:
        raise errors.NotFound(f"no bot {bot_id}")
    bot = store.to_bot(rt.settings, row)
    if bot.status is BotStatus.DISCONNECTED:
        return bot
    client = rt.telegram.for_token(rt.cipher.decrypt(row.token_ciphertext))
    info: WebhookInfo | None
    try:
        await client.get_me()
        info = await client.get_webhook_info()
    except errors.TelegramUnauthorized:
        info = None
    except errors.TelegramError as exc:
        log.warning(
            "bot.health_check_failed", bot_id=bot_id, error=type(exc).__name__, detail=exc.message
        )
        return bot
    observation = rules.Observation(
        token_accepted=info is not None, registered_url=info.url if info is not None else ""
    )
    verdict = rules.judge_health(observation, expected_url=_expected_url(rt, bot))

    now = rt.clock()
    async with rt.db.transaction() as conn:
        current = await store.load(conn, bot_id, for_update=True)
        # A rotation or disconnect that landed meanwhile makes this observation stale.
        if (
            current is None
            or current.token_ciphertext != row.token_ciphertext
            or current.status == BotStatus.DISCONNECTED
        ):
            return bot if current is None else store.to_bot(rt.settings, current)
        values: dict[str, Any] = {"last_checked_at": now}
        if info is not None:
            values["last_error_message"] = info.last_error_message
            values["last_error_at"] = store.aware(info.last_error_date)
        await store.change(conn, bot_id, values)
        await _change_status(
            conn,
            rt,
            store.to_bot(rt.settings, current),
            (verdict.status, verdict.conflict_kind),
            reason=verdict.reason,
            actor=actor,
            now=now,
        )
        checked = store.to_bot(rt.settings, await store.reload(conn, bot_id))
    log.info(
        "bot.health_checked", bot_id=bot_id, status=checked.status, conflict=checked.conflict_kind
    )
    return checked


async def rotate_secret_after_forgery(
    rt: Runtime, bot_id: int, *, forged_requests: int
) -> ConnectedBot | None:
    """Move a bot to its next webhook secret generation because forged requests piled up.

    Telegram is told first (setWebhook with the new generation's secret); the previous
    generation stays valid for `secret_grace_seconds`, so pushes already in flight still
    pass. None when the bot may not be rotated now (bots.rules.may_rotate_secret), or
    Telegram could not be told (the next minute's flood tries again).
    """
    async with rt.db.engine.connect() as conn:
        row = await store.load(conn, bot_id)
    now = rt.clock()
    if row is None or not rules.may_rotate_secret(store.to_bot(rt.settings, row), now):
        return None
    bot = store.to_bot(rt.settings, row)
    generation = bot.secret_generation + 1
    grace_end = now + timedelta(seconds=rt.settings.secret_grace_seconds)
    client = rt.telegram.for_token(rt.cipher.decrypt(row.token_ciphertext))
    try:
        await _register(rt, client, bot_id, bot.mode, generation)
    except errors.TelegramError as exc:
        log.warning("bot.secret_rotation_failed", bot_id=bot_id, error=type(exc).__name__)
        return None
    threshold = rt.settings.forged_rotate_threshold
    reason = "forged requests"
    async with rt.db.transaction() as conn:
        changed = await store.change(
            conn,
            bot_id,
            {
                "secret_generation": generation,
                "previous_secret_valid_until": grace_end,
                "updated_at": now,
            },
            if_generation=bot.secret_generation,
        )
        if not changed:
            # A token rotation or a disconnect landed meanwhile; it set its own webhook.
            return None
        await audit.record(
            conn,
            action="bot.secret_rotated",
            actor=audit.SYSTEM,
            now=now,
            workspace_id=bot.workspace_id,
            bot_id=bot_id,
            detail={
                "reason": reason,
                "forged_requests": forged_requests,
                "threshold": threshold,
                "secret_generation": generation,
                "previous_secret_valid_until": grace_end,
            },
        )
        await events.emit(
            conn,
            rt,
            workspace_id=bot.workspace_id,
            event_type=EventType.BOT_SECRET_ROTATED,
            data=catalog.BotSecretRotatedData(
                bot_id=bot_id,
                username=bot.username,
                secret_generation=generation,
                previous_secret_valid_until=grace_end,
                reason=reason,
                forged_requests=forged_requests,
                threshold=threshold,
            ),
            now=now,
        )
        rotated = store.to_bot(rt.settings, await store.reload(conn, bot_id))
    log.warning(
        "bot.secret_rotated", bot_id=bot_id, secret_generation=generation, forged=forged_requests
    )
    return rotated


# --- the operator's key rotation (tgrelay keys rotate) -------------------------------------


class Rekeyed(StrEnum):
    """How moving one bot to the primary key went."""

    DONE = "done"  # its token (and, if we hold its webhook, the webhook's secret) moved
    ALREADY = "already"  # its token was under the primary key before
    GONE = "gone"  # no such bot (any more)
    CHANGED = "changed"  # the row changed meanwhile; nothing written: read it again
    IN_GRACE = "in_grace"  # a secret rotation's grace lasts; left for a later run
    UNREACHABLE = "unreachable"  # Telegram could not be told; left for a later run


async def rekey(rt: Runtime, bot_id: int) -> Rekeyed:
    """Re-encrypt a bot's token under the primary key and, while our webhook is registered,
    register it again under the primary key's secret first.

    Invariant that `tgrelay keys check` relies on: a webhook-mode bot whose token is under a
    key has its webhook secret derived from that key (or a newer one). So the webhook moves
    to the next secret generation (the previous one stays valid for `secret_grace_seconds`,
    like any rotation) and the row is written only if neither the token nor the generation
    changed meanwhile. A token Telegram refuses has no webhook to move: only re-encrypted.
    """
    async with rt.db.engine.connect() as conn:
        row = await store.load(conn, bot_id)
    if row is None:
        return Rekeyed.GONE
    ciphertext = str(row.token_ciphertext)
    position = rt.cipher.key_position(ciphertext)
    if position is None:
        raise errors.UndecryptableSecret(
            table="bots", row_id=str(bot_id), column="token_ciphertext"
        )
    if position == 0:
        return Rekeyed.ALREADY
    bot = store.to_bot(rt.settings, row)
    now = rt.clock()
    values: dict[str, Any] = {"token_ciphertext": rt.cipher.reencrypt(ciphertext)}
    if rules.holds_webhook(bot):
        if not rules.may_rotate_secret(bot, now):
            return Rekeyed.IN_GRACE
        generation = bot.secret_generation + 1
        grace_end = now + timedelta(seconds=rt.settings.secret_grace_seconds)
        client = rt.telegram.for_token(rt.cipher.decrypt(ciphertext))
        try:
            await _register(rt, client, bot_id, bot.mode, generation)
        except errors.TelegramUnauthorized:
            pass  # a revoked token: Telegram dropped its webhook; rotate_token sets a new one
        except errors.TelegramError as exc:
            log.warning("bot.rekey_unreachable", bot_id=bot_id, error=type(exc).__name__)
            return Rekeyed.UNREACHABLE
        else:
            values |= {
                "secret_generation": generation,
                "previous_secret_valid_until": grace_end,
                "updated_at": now,
            }
    async with rt.db.transaction() as conn:
        changed = await store.change(
            conn,
            bot_id,
            values,
            if_token_ciphertext=ciphertext,
            if_generation=bot.secret_generation if "secret_generation" in values else None,
        )
        if not changed:
            return Rekeyed.CHANGED
        if "secret_generation" in values:
            await audit.record(
                conn,
                action="bot.secret_rotated",
                actor=audit.SYSTEM,
                now=now,
                workspace_id=bot.workspace_id,
                bot_id=bot_id,
                detail={
                    "reason": "key rotation",
                    "secret_generation": values["secret_generation"],
                    "previous_secret_valid_until": values["previous_secret_valid_until"],
                },
            )
    log.info("bot.rekeyed", bot_id=bot_id, secret_generation=values.get("secret_generation"))
    return Rekeyed.DONE


@dataclass(frozen=True, kw_only=True)
class WebhookHolder:
    """A bot whose webhook we hold at Telegram, as `tgrelay keys check` needs it."""

    bot_id: int
    # The key this opens is the one the registered webhook's secret derives from (`rekey`).
    token_ciphertext: str
    # Till then the previous generation's secret is accepted too (maybe from an older key).
    previous_secret_valid_until: datetime | None


async def webhook_holders(rt: Runtime) -> list[WebhookHolder]:
    """Every bot whose webhook we hold (rules.holds_webhook)."""
    async with rt.db.engine.connect() as conn:
        rows = await store.every(conn)
    return [
        WebhookHolder(
            bot_id=bot.id,
            token_ciphertext=str(row.token_ciphertext),
            previous_secret_valid_until=bot.previous_secret_valid_until,
        )
        for row in rows
        if rules.holds_webhook(bot := store.to_bot(rt.settings, row))
    ]


# --- what the intake and the poller ask ---------------------------------------------------


async def intake_credentials(rt: Runtime, bot_id: int) -> IntakeCredentials | None:
    """The secrets a webhook push for this bot may carry; None when we take no pushes for it."""
    async with rt.db.engine.connect() as conn:
        row = await store.load(conn, bot_id)
    if row is None or row.status == BotStatus.DISCONNECTED:
        return None
    bot = store.to_bot(rt.settings, row)
    secrets = tuple(
        secret
        for generation in rules.valid_secret_generations(bot, rt.clock())
        for secret in rt.cipher.webhook_secrets(bot_id, generation)
    )
    return IntakeCredentials(bot_id=bot_id, workspace_id=bot.workspace_id, secrets=secrets)


async def polling_bots(rt: Runtime) -> list[PollingBot]:
    """Bots in polling mode whose token is worth a getUpdates call."""
    async with rt.db.engine.connect() as conn:
        rows = await store.polled(conn)
    return [PollingBot(bot_id=bot_id, token=rt.cipher.decrypt(secret)) for bot_id, secret in rows]


async def record_status(
    rt: Runtime,
    bot_id: int,
    status: BotStatus,
    *,
    reason: str,
    conflict_kind: ConflictKind | None = None,
    actor: str = audit.SYSTEM,
) -> bool:
    """Store a status someone observed (e.g. the poller got 401 or 409); True if it changed.

    A disconnected bot stays disconnected: only `connect` brings it back, so a late
    observation cannot revive it.
    """
    async with rt.db.transaction() as conn:
        row = await store.load(conn, bot_id, for_update=True)
        if row is None:
            raise errors.NotFound(f"no bot {bot_id}")
        bot = store.to_bot(rt.settings, row)
        if bot.status is BotStatus.DISCONNECTED:
            return False
        return await _change_status(
            conn, rt, bot, (status, conflict_kind), reason=reason, actor=actor, now=rt.clock()
        )


async def _change_status(
    conn: AsyncConnection,
    rt: Runtime,
    bot: ConnectedBot,
    new: tuple[BotStatus, ConflictKind | None],
    *,
    reason: str,
    actor: str,
    now: datetime,
    event: EventType | None = None,
) -> bool:
    """Store a status change with its audit row and its event; True if the status changed.

    The event is bot.disconnected for a disconnect, bot.status_changed otherwise, unless
    `event` says which (a takeover's disconnect is a bot.status_changed with its reason).
    """
    if not await store.change_status(conn, bot, new, reason=reason, actor=actor, now=now):
        return False
    status, conflict_kind = new
    if status is BotStatus.DISCONNECTED and event is not EventType.BOT_STATUS_CHANGED:
        await _emit_bot(conn, rt, EventType.BOT_DISCONNECTED, bot, status, now=now)
        return True
    await events.emit(
        conn,
        rt,
        workspace_id=bot.workspace_id,
        event_type=EventType.BOT_STATUS_CHANGED,
        data=catalog.BotStatusData(
            bot_id=bot.id,
            username=bot.username,
            status=status.value,
            previous_status=bot.status.value,
            conflict_kind=None if conflict_kind is None else conflict_kind.value,
            reason=reason,
        ),
        now=now,
    )
    return True


async def _emit_bot(
    conn: AsyncConnection,
    rt: Runtime,
    event_type: EventType,
    bot: ConnectedBot,
    status: BotStatus,
    *,
    now: datetime,
) -> None:
    await events.emit(
        conn,
        rt,
        workspace_id=bot.workspace_id,
        event_type=event_type,
        data=catalog.BotData(
            bot_id=bot.id, username=bot.username, mode=bot.mode.value, status=status.value
        ),
        now=now,
    )


async def workspace_of(conn: AsyncConnection, bot_id: int) -> str | None:
    """The workspace a bot belongs to, in the caller's transaction (None: unknown bot)."""
    row = await store.load(conn, bot_id)
    return None if row is None else str(row.workspace_id)


async def held_token(
    conn: AsyncConnection, rt: Runtime, bot_id: int, workspace_id: str
) -> str | None:
    """The token of a bot `workspace_id` holds and has not disconnected; None otherwise, so
    nothing is sent on a workspace's behalf through a bot it let go or lost."""
    row = await store.load(conn, bot_id)
    if row is None or row.workspace_id != workspace_id or row.status == BotStatus.DISCONNECTED:
        return None
    return rt.cipher.decrypt(row.token_ciphertext)


async def holdings(conn: AsyncConnection, bot_ids: Collection[int]) -> dict[int, Holding]:
    """Who holds each known bot and since when (unknown bots are left out), in the caller's
    transaction: updates received before `connected_since` belong to no current holder."""
    return await store.holdings(conn, bot_ids)


async def token_of(rt: Runtime, bot_id: int) -> str:
    """The plaintext token of a bot, for a Bot API call; keep it out of logs and errors."""
    async with rt.db.engine.connect() as conn:
        return await read_token(conn, rt, bot_id)


async def read_token(conn: AsyncConnection, rt: Runtime, bot_id: int) -> str:
    """`token_of`, on a connection the caller reads other rows with."""
    row = await store.load(conn, bot_id)
    if row is None:
        raise errors.NotFound(f"no bot {bot_id}")
    return rt.cipher.decrypt(row.token_ciphertext)


# --- internals ----------------------------------------------------------------------------


async def _hold_changed(conn: AsyncConnection, rt: Runtime, change: HoldChanged) -> None:
    for listener in rt.hooks[HOLD_CHANGED]:
        await listener(conn, rt, change)


async def _identify(client: telegram.TelegramClient) -> telegram.BotIdentity:
    try:
        return await client.get_me()
    except errors.TelegramUnauthorized as exc:
        raise errors.TelegramUnauthorized(
            "Telegram refused this token: it is invalid or was revoked in @BotFather",
            method=exc.method,
        ) from None


async def _register(
    rt: Runtime, client: telegram.TelegramClient, bot_id: int, mode: BotMode, generation: int
) -> None:
    """Point Telegram at us: our webhook with this generation's secret, or no webhook at all."""
    if mode is BotMode.WEBHOOK:
        await client.set_webhook(
            url=rt.settings.webhook_url(bot_id),
            secret_token=rt.cipher.webhook_secrets(bot_id, generation)[0],
            allowed_updates=telegram_updates.ALLOWED_UPDATES,
        )
    else:
        # Pending updates stay: the poller fetches them.
        await client.delete_webhook(drop_pending_updates=False)


def _check_connectable(row: Row[Any] | None, workspace_id: str, *, take_over: bool) -> None:
    if (
        row is not None
        and row.workspace_id != workspace_id
        and row.status != BotStatus.DISCONNECTED
        and not take_over
    ):
        raise errors.Conflict(
            'this bot is connected to another workspace; send "take_over": true to move it here'
        )


async def _release(conn: AsyncConnection, rt: Runtime, bot: ConnectedBot, *, now: datetime) -> None:
    """The workspace holding `bot` loses it to another one, in the connecting transaction.

    A bot still connected there is taken over: disconnected with its audit row and a
    bot.status_changed event in that workspace. Its connections are suspended either way
    (one disconnected before they were suspended on disconnect may still be active). The
    actor is the system: the other workspace's key ids are not that workspace's business.
    """
    if bot.status is not BotStatus.DISCONNECTED:
        await _change_status(
            conn,
            rt,
            bot,
            (BotStatus.DISCONNECTED, None),
            reason=TAKEN_OVER,
            actor=audit.SYSTEM,
            now=now,
            event=EventType.BOT_STATUS_CHANGED,
        )
    await _hold_changed(
        conn,
        rt,
        HoldChanged(
            workspace_id=bot.workspace_id, bot_id=bot.id, held=False, actor=audit.SYSTEM, now=now
        ),
    )
    log.info("bot.taken_over", bot_id=bot.id, previous_workspace_id=bot.workspace_id)


def _generation_on_connect(row: Row[Any] | None, workspace_id: str) -> tuple[int, datetime | None]:
    """(secret generation, grace end of the previous one) for a connect.

    A disconnected bot, or one moving to another workspace, comes back under a new
    generation so no secret from before is accepted; an active one keeps its secrets
    (connecting again repairs its webhook).
    """
    if row is None:
        return 1, None
    if row.status == BotStatus.DISCONNECTED or row.workspace_id != workspace_id:
        return int(row.secret_generation) + 1, None
    return int(row.secret_generation), row.previous_secret_valid_until


def _expected_url(rt: Runtime, bot: ConnectedBot) -> str | None:
    """Our webhook URL in webhook mode (ConfigurationError without a public URL), else None."""
    if bot.mode is BotMode.WEBHOOK:
        return rt.settings.webhook_url(bot.id)
    return None
