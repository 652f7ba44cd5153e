"""The groups handler, in-process (tests/dispatching.py): the connect flow's replies, what it
consumes, and the inbound events that say so."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.dispatching import Dispatching, Produced, SecondConnection, dispatching
from tgrelay.bots import service as bots_service
from tgrelay.db import tables
from tgrelay.groups import handlers
from tgrelay.groups import service as groups_service
from tgrelay.groups.models import ConnectSession
from tgrelay.inbox.models import Handler, Inbound
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator

ANN: dict[str, Any] = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}
BOB: dict[str, Any] = {"id": 5002, "is_bot": False, "first_name": "Bob", "username": "bob"}
TTL_SECONDS = 600


@pytest.fixture
def clock() -> Clock:
    return Clock(start=datetime.now().astimezone())


@pytest.fixture
async def relay(
    emulator: RunningEmulator, tmp_path: Path, clock: Clock
) -> AsyncIterator[Dispatching]:
    async with dispatching(
        emulator, tmp_path, clock=clock, connect_session_ttl_seconds=TTL_SECONDS
    ) as found:
        yield found


@pytest.fixture
async def bot(relay: Dispatching) -> BotRecord:
    return await relay.connect_bot("alerts_bot")


async def _session(relay: Dispatching, bot: BotRecord) -> ConnectSession:
    view = await groups_service.create_session(relay.rt, relay.principal, bot_id=bot.id, topic=None)
    return view.session


async def _state(relay: Dispatching, session_id: str) -> ConnectSession:
    view = await groups_service.get_session(relay.rt, relay.principal.workspace_id, session_id)
    return view.session


def _texts(produced: Produced) -> list[messages.SendText]:
    """Each bot message the batch queued through the outbox."""
    sent = [messages.load(job.payload[outbox.REQUEST]) for job in produced.of_kind(outbox.SEND)]
    assert all(isinstance(request, messages.SendText) for request in sent)
    return [request for request in sent if isinstance(request, messages.SendText)]


def _replies(produced: Produced) -> list[tuple[int, str]]:
    """(chat id, text) of each bot message the batch queued."""
    return [(request.chat_id, request.text) for request in _texts(produced)]


def _consumers(produced: Produced) -> list[tuple[str, str | None]]:
    """(text, consumed_by) of each message.received event the batch emitted."""
    return [
        (e.data["text"], e.data["consumed_by"])
        for e in produced.events
        if e.type == "message.received"
    ]


async def _audit_actions(relay: Dispatching) -> list[str]:
    async with relay.rt.db.engine.connect() as conn:
        rows = await conn.execute(select(tables.audit_log.c.action).order_by(tables.audit_log.c.id))
        return [row.action for row in rows]


async def _verified(relay: Dispatching, bot: BotRecord) -> ConnectSession:
    """Ann's /start with a new session's token: the session waits for a group."""
    session = await _session(relay, bot)
    relay.emulator.emulator.send_message(bot.id, ANN, None, f"/start {session.token}")
    await relay.process_pending(bot.id)
    return await _state(relay, session.id)


async def test_start_with_a_token_verifies_and_is_consumed(
    relay: Dispatching, bot: BotRecord
) -> None:
    """/start <token> verifies Ann, queues the add-to-group reply with the bot's username,
    and its message.received says groups consumed it; a plain message is nobody's."""
    session = await _session(relay, bot)
    relay.emulator.emulator.send_message(bot.id, ANN, None, f"/start {session.token}")
    relay.emulator.emulator.send_message(bot.id, ANN, None, "thanks!")
    produced = await relay.process_pending(bot.id)

    [reply] = _texts(produced)
    assert (reply.chat_id, reply.text) == (ANN["id"], handlers.VERIFIED_REPLY.format(name="Ann"))
    assert reply.keyboard == messages.Keyboard.column(
        messages.UrlButton(
            text="➕ Add to a group", url="https://t.me/alerts_bot?startgroup=connect"
        )
    )
    assert _consumers(produced) == [(f"/start {session.token}", "groups"), ("thanks!", None)]
    assert (await _state(relay, session.id)).state.value == "waiting_group"


async def test_adding_the_bot_connects_the_group_and_consumes_the_membership_updates(
    relay: Dispatching, bot: BotRecord
) -> None:
    """Ann adding the bot connects the group (group.connected, the confirmation queued); the
    service message of the same addition is consumed too."""
    session = await _verified(relay, bot)
    chat = relay.emulator.emulator.create_chat("supergroup", "Ops alerts")
    relay.emulator.emulator.add_bot(chat["id"], bot.id, by=ANN)
    produced = await relay.process_pending(bot.id)

    assert _replies(produced) == [(chat["id"], handlers.CONNECTED_REPLY)]
    [connected] = [e for e in produced.events if e.type == "group.connected"]
    assert (connected.data["chat_id"], connected.data["session_id"]) == (chat["id"], session.id)
    assert [e.data["consumed_by"] for e in produced.events if e.type == "message.received"] == [
        "groups"
    ]
    assert (await _state(relay, session.id)).state.value == "connected"


async def test_addition_by_another_user_is_ignored_audited_and_not_consumed(
    relay: Dispatching, bot: BotRecord
) -> None:
    """Bob adding the bot while Ann's session waits connects nothing, leaves an audit row,
    and leaves the update to the handlers after groups."""
    session = await _verified(relay, bot)
    chat = relay.emulator.emulator.create_chat("supergroup", "Bob's group")
    relay.emulator.emulator.add_bot(chat["id"], bot.id, by=BOB)
    produced = await relay.process_pending(bot.id)

    assert produced.jobs == []
    assert [e.data["consumed_by"] for e in produced.events] == [None]  # the service message
    assert "group.addition_ignored" in await _audit_actions(relay)
    assert (await _state(relay, session.id)).state.value == "waiting_group"
    assert await groups_service.list_connections(relay.rt, relay.principal.workspace_id) == []


async def test_addition_before_phase_two_began_is_ignored(
    relay: Dispatching, bot: BotRecord
) -> None:
    """A my_chat_member dated before the session's phase 2 started connects nothing."""
    session = await _verified(relay, bot)
    assert session.group_started_at is not None
    chat = relay.emulator.emulator.create_chat("supergroup", "Old group")
    bot_user = {
        "id": bot.id,
        "is_bot": True,
        "first_name": bot.first_name,
        "username": "alerts_bot",
    }
    relay.emulator.emulator.inject_update(
        bot.id,
        {
            "my_chat_member": {
                "chat": chat,
                "from": ANN,
                "date": int((session.group_started_at - timedelta(minutes=5)).timestamp()),
                "old_chat_member": {"status": "left", "user": bot_user},
                "new_chat_member": {"status": "member", "user": bot_user},
            }
        },
    )
    produced = await relay.process_pending(bot.id)

    assert produced == Produced(jobs=[], events=[])
    assert (await _audit_actions(relay))[-1] == "group.addition_ignored"
    assert (await _state(relay, session.id)).state.value == "waiting_group"


async def test_reused_and_replaced_tokens_are_refused_with_a_reply(
    relay: Dispatching, bot: BotRecord
) -> None:
    """A replaced session's token and a spent token get a reply, change nothing, and are
    consumed (tgrelay answered them)."""
    first = await _session(relay, bot)
    second = await _session(relay, bot)
    assert (await _state(relay, first.id)).state.value == "cancelled"
    relay.emulator.emulator.send_message(bot.id, BOB, None, f"/start {first.token}")
    relay.emulator.emulator.send_message(bot.id, ANN, None, f"/start {second.token}")
    relay.emulator.emulator.send_message(bot.id, BOB, None, f"/start {second.token}")
    produced = await relay.process_pending(bot.id)

    assert _replies(produced) == [
        (BOB["id"], handlers.UNKNOWN_LINK_REPLY),
        (ANN["id"], handlers.VERIFIED_REPLY.format(name="Ann")),
        (BOB["id"], handlers.UNKNOWN_LINK_REPLY),
    ]
    assert [consumer for _, consumer in _consumers(produced)] == ["groups"] * 3
    after = await _state(relay, second.id)
    assert after.user is not None
    assert after.user.id == ANN["id"]


async def test_expired_token_is_refused_with_a_reply(
    relay: Dispatching, bot: BotRecord, clock: Clock
) -> None:
    """A token used after its expiry gets the expiry reply and the session reads expired."""
    session = await _session(relay, bot)
    clock.advance(TTL_SECONDS + 1)
    assert (await _state(relay, session.id)).state.value == "expired"
    relay.emulator.emulator.send_message(bot.id, ANN, None, f"/start {session.token}")
    produced = await relay.process_pending(bot.id)

    assert _replies(produced) == [(ANN["id"], handlers.EXPIRED_LINK_REPLY)]
    assert (await _state(relay, session.id)).user is None


async def test_bare_start_in_private_gets_one_reply_on_how_to_link_a_group(
    relay: Dispatching, bot: BotRecord
) -> None:
    """A private bare `/start` gets the how-to reply and is consumed; another payload (the
    team's own deep link) and a bare `/start@bot` in a group get none and are the app's."""
    chat = relay.emulator.emulator.create_chat("supergroup", "Ops")
    relay.emulator.emulator.add_bot(chat["id"], bot.id, by=ANN)  # no session waits for a group
    await relay.process_pending(bot.id)
    relay.emulator.emulator.send_message(bot.id, ANN, None, "/start")
    relay.emulator.emulator.send_message(bot.id, ANN, None, "/start promo_2026")
    relay.emulator.emulator.send_message(bot.id, ANN, {"id": chat["id"]}, "/start@alerts_bot")
    produced = await relay.process_pending(bot.id)

    assert _replies(produced) == [(ANN["id"], handlers.BARE_START_REPLY)]
    assert _consumers(produced) == [
        ("/start", "groups"),
        ("/start promo_2026", None),
        ("/start@alerts_bot", None),
    ]


async def test_bare_start_reply_can_be_switched_off(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """With TGRELAY_REPLY_TO_BARE_START=false a bare `/start` gets no reply and is the app's."""
    async with dispatching(emulator, tmp_path, reply_to_bare_start=False) as relay:
        bot = await relay.connect_bot("alerts_bot")
        relay.emulator.emulator.send_message(bot.id, ANN, None, "/start")
        produced = await relay.process_pending(bot.id)

    assert produced.jobs == []
    assert _consumers(produced) == [("/start", None)]


async def test_a_consumed_update_never_reaches_the_handlers_after(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Dispatch hands a later handler only what no handler before it consumed, each update
    with its bot and workspace; the event names the first consumer."""
    seen: list[tuple[str, int, str]] = []

    async def everything(conn: AsyncConnection, inbound: Inbound) -> bool:
        text = inbound.processed.raw["message"]["text"]
        seen.append((text, inbound.bot.bot_id, inbound.workspace_id))
        return True

    async with dispatching(emulator, tmp_path) as relay:
        relay.handlers = [handlers.handler(relay.rt), Handler.each("support", everything)]
        bot = await relay.connect_bot("alerts_bot")
        relay.emulator.emulator.send_message(bot.id, ANN, None, "/start")
        relay.emulator.emulator.send_message(bot.id, ANN, None, "I need help")
        produced = await relay.process_pending(bot.id)

    assert seen == [("I need help", bot.id, relay.principal.workspace_id)]
    assert _consumers(produced) == [("/start", "groups"), ("I need help", "support")]


async def test_a_handler_opening_a_second_connection_fails(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """The helper refuses a handler that opens its own connection inside the job's."""
    async with dispatching(emulator, tmp_path) as relay:
        rt = relay.rt

        async def strays(conn: AsyncConnection, batch: Sequence[Inbound]) -> set[int]:
            await bots_service.list_bots(rt, batch[0].workspace_id)  # opens its own
            return set()

        relay.handlers = [Handler(name="stray", handle=strays)]
        bot = await relay.connect_bot("alerts_bot")
        relay.emulator.emulator.send_message(bot.id, ANN, None, "hello")
        with pytest.raises(SecondConnection):
            await relay.process_pending(bot.id)


async def test_connections_follow_their_bot_through_the_hold_hook(
    relay: Dispatching, bot: BotRecord
) -> None:
    """Disconnecting the bot suspends its connections and reconnecting resumes them
    (bots tells groups through the hook tgrelay.wiring installs)."""
    await _verified(relay, bot)
    chat = relay.emulator.emulator.create_chat("supergroup", "Ops alerts")
    relay.emulator.emulator.add_bot(chat["id"], bot.id, by=ANN)
    await relay.process_pending(bot.id)

    async def statuses() -> list[str]:
        found = await groups_service.list_connections(relay.rt, relay.principal.workspace_id)
        return [connection.status.value for connection in found]

    assert await statuses() == ["active"]
    await bots_service.disconnect(relay.rt, relay.principal, bot.id)
    assert await statuses() == ["suspended"]
    await bots_service.connect(relay.rt, relay.principal, bot.token)
    assert await statuses() == ["active"]
