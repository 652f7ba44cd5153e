"""The conversations handler in process_update (tests/dispatching.py): triggers start flows,
answers move them, bad answers retry, /cancel and the idle timer end them, and buttons of
another conversation are refused politely."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conversations.running import (
    ADA,
    BOB,
    add_flow,
    answers,
    conversation_events,
    history,
    only_conversation,
    presses,
    queued,
    replies,
    run_timer,
    says,
    state_of,
)
from tests.dispatching import Dispatching, dispatching
from tgrelay.bots import service as bots
from tgrelay.conversations import handlers, runtime, store
from tgrelay.conversations.models import Status
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WHO = {"flow": "address", "version": 1, "chat_id": ADA["id"], "user_id": ADA["id"]}
ADDRESS: dict[str, Any] = {
    "name": "address",
    "trigger": {"type": "command", "command": "/address"},
    "timeout_seconds": 60,
    "steps": [
        {
            "id": "zip",
            "kind": "ask",
            "message": "Hi {{ user.first_name }}, your postal code?",
            "input": {"type": "text", "pattern": "[0-9]{5}"},
            "variable": "zip",
            "retry_message": "Five digits, please.",
        },
        {
            "id": "country",
            "kind": "ask",
            "message": "Which country?",
            "input": {
                "type": "choice",
                "choices": [
                    {"label": "Germany", "value": "DE"},
                    {"label": "France", "value": "FR"},
                ],
            },
            "variable": "country",
        },
        {"id": "done", "kind": "end", "message": "Saved: {{ zip }}, {{ country }}."},
    ],
}
ZIP_QUESTION: tuple[str, list[str]] = ("Hi Ada, your postal code?", [])
COUNTRY_QUESTION = ("Which country?", ["cv:country:DE", "cv:country:FR"])


@pytest.fixture
def clock() -> Clock:
    return Clock(start=START)


@pytest.fixture
async def relay(
    emulator: RunningEmulator, tmp_path: Path, clock: Clock
) -> AsyncIterator[Dispatching]:
    async with dispatching(emulator, tmp_path, clock=clock) as found:
        await add_flow(found, ADDRESS)
        yield found


@pytest.fixture
async def bot(relay: Dispatching) -> BotRecord:
    return await relay.connect_bot("shop_bot")


async def test_a_command_starts_its_flow(relay: Dispatching, bot: BotRecord) -> None:
    """/address in a private chat starts the flow: the first question goes out, the
    conversation waits at its first step, and the update is the conversations handler's."""
    produced = await says(relay, bot.id, "/address")

    row = await only_conversation(relay)
    assert replies(produced) == [ZIP_QUESTION]
    assert [(e.type, e.data.get("consumed_by")) for e in produced.events] == [
        ("conversation.started", None),
        ("message.received", "conversations"),
    ]
    assert conversation_events(produced) == [("conversation.started", WHO)]
    assert (row.status, row.step_id, row.ended_at) == ("active", "zip", None)
    assert await history(relay, row.id) == [(None, "zip", "start")]


async def test_each_answer_moves_the_conversation_to_its_end(
    relay: Dispatching, bot: BotRecord, clock: Clock
) -> None:
    """A valid postal code leads to the country's buttons; pressing one ends the flow with
    its variables in conversation.completed, the press answered and every move in history."""
    await says(relay, bot.id, "/address")
    clock.advance(5)
    typed = await says(relay, bot.id, "10115")
    clock.advance(5)
    pressed = await presses(relay, bot.id, "cv:country:DE")

    row = await only_conversation(relay)
    assert replies(typed) == [COUNTRY_QUESTION]
    assert replies(pressed) == [("Saved: 10115, DE.", [])]
    assert answers(pressed) == [None]
    assert conversation_events(pressed) == [
        ("conversation.completed", {**WHO, "variables": {"zip": "10115", "country": "DE"}})
    ]
    assert (row.status, row.step_id, row.ended_at) == ("completed", "done", clock())
    assert await history(relay, row.id) == [
        (None, "zip", "start"),
        ("zip", "country", "answered text '10115'"),
        ("country", "done", "answered button 'country:DE'"),
    ]


async def test_a_bad_answer_gets_the_retry_message(relay: Dispatching, bot: BotRecord) -> None:
    """An answer the step refuses is answered with its retry message; the conversation stays
    at the step, and the refusal is in its history."""
    await says(relay, bot.id, "/address")
    produced = await says(relay, bot.id, "12")

    row = await only_conversation(relay)
    assert replies(produced) == [("Five digits, please.", [])]
    assert (row.status, row.step_id, state_of(row).tries) == ("active", "zip", 1)
    assert (await history(relay, row.id))[-1] == (
        "zip",
        "zip",
        "refused text '12': That is not in the expected format.",
    )


async def test_cancel_ends_the_conversation_and_frees_the_chat(
    relay: Dispatching, bot: BotRecord
) -> None:
    """/cancel abandons the live conversation (reason cancel) and says so; the next message
    is no longer the flow's and goes on to the handlers after it."""
    await says(relay, bot.id, "/address")
    cancelled = await says(relay, bot.id, "/cancel")
    later = await says(relay, bot.id, "hello")

    row = await only_conversation(relay)
    assert replies(cancelled) == [(handlers.CANCELLED, [])]
    assert conversation_events(cancelled) == [
        ("conversation.abandoned", {**WHO, "reason": "cancel", "step": "zip"})
    ]
    assert (row.status, row.end_reason) == ("abandoned", "cancel")
    assert [(e.type, e.data["consumed_by"]) for e in later.events] == [("message.received", None)]


async def test_cancel_without_a_conversation_is_not_consumed(
    relay: Dispatching, bot: BotRecord
) -> None:
    """/cancel with nothing live, and a command no flow has, go on untouched."""
    produced = await says(relay, bot.id, "/cancel")
    other = await says(relay, bot.id, "/unknown")

    assert [e.data["consumed_by"] for e in [*produced.events, *other.events]] == [None, None]
    assert replies(produced) + replies(other) == []


async def test_idle_timer_abandons_a_quiet_conversation_and_ignores_a_stale_one(
    relay: Dispatching, bot: BotRecord, clock: Clock
) -> None:
    """Each answer sets a timer at last input + timeout_seconds; the first, outdated by the
    answer, does nothing when it runs, and the second, due, abandons the conversation."""
    await says(relay, bot.id, "/address")
    clock.advance(30)
    await says(relay, bot.id, "10115")
    first, second = await queued(relay, runtime.TIMEOUT)
    assert (first.run_at, second.run_at) == (
        START + timedelta(seconds=60),
        START + timedelta(seconds=90),
    )

    clock.advance(30)
    stale = await run_timer(relay, first)
    before = await only_conversation(relay)
    clock.advance(30)
    due = await run_timer(relay, second)

    row = await only_conversation(relay)
    assert (stale.jobs, stale.events, before.status) == ([], [], "active")
    assert conversation_events(due) == [
        ("conversation.abandoned", {**WHO, "reason": "timeout", "step": "country"})
    ]
    assert (row.status, row.end_reason, row.ended_at) == ("abandoned", "timeout", clock())


async def test_a_button_of_another_conversation_is_refused_politely(
    relay: Dispatching, bot: BotRecord
) -> None:
    """A country button from a cancelled conversation, pressed while a new one asks for the
    postal code, moves nothing and is answered with a notice; with nothing live, the press
    is told the conversation ended."""
    await says(relay, bot.id, "/address")
    await says(relay, bot.id, "10115")
    await says(relay, bot.id, "/cancel")
    await says(relay, bot.id, "/address")
    old = await presses(relay, bot.id, "cv:country:DE")
    await says(relay, bot.id, "/cancel")
    none_live = await presses(relay, bot.id, "cv:country:FR")

    assert (answers(old), replies(old), conversation_events(old)) == (
        [handlers.STALE_BUTTON],
        [],
        [],
    )
    assert (answers(none_live), replies(none_live)) == ([handlers.ENDED], [])


async def test_other_users_and_other_callbacks_are_left_alone(
    relay: Dispatching, bot: BotRecord
) -> None:
    """Bob's messages are not part of Ada's conversation, and a callback without the
    conversations' tag goes on to the next handler."""
    await says(relay, bot.id, "/address")
    bob = await says(relay, bot.id, "10115", who=BOB)
    foreign = await presses(relay, bot.id, "kb:1:2")

    row = await only_conversation(relay)
    assert [e.data["consumed_by"] for e in bob.events] == [None]
    assert [e.data["consumed_by"] for e in foreign.events] == [None]
    assert (row.step_id, state_of(row).status) == ("zip", Status.ACTIVE)


async def test_a_conversation_of_the_bots_former_workspace_is_ended_not_continued(
    relay: Dispatching, bot: BotRecord, clock: Clock
) -> None:
    """After another workspace takes the bot over, Ada's conversation of the first one is
    cancelled (its workspace hears conversation.abandoned) and /address starts the new
    holder's flow."""
    await says(relay, bot.id, "/address")
    other, _key = await workspaces.create_workspace(relay.rt.db, "Other", now=clock())
    await add_flow(relay, ADDRESS, workspace_id=other.id)
    await bots.connect(
        relay.rt, Principal(workspace_id=other.id, actor="test"), bot.token, take_over=True
    )
    clock.advance(1)  # the new holder owns the updates received after it connected

    produced = await says(relay, bot.id, "/address")

    async with relay.rt.db.engine.connect() as conn:
        first = await store.list_conversations(conn, relay.principal.workspace_id, limit=5)
        second = await store.list_conversations(conn, other.id, limit=5)
    assert [(e.type, e.workspace_id) for e in produced.events] == [
        ("conversation.abandoned", relay.principal.workspace_id),
        ("conversation.started", other.id),
        ("message.received", other.id),
    ]
    assert [(c.status, c.end_reason) for c in first] == [("abandoned", "cancel")]
    assert [(c.status, c.step_id) for c in second] == [("active", "zip")]
    assert replies(produced) == [ZIP_QUESTION]


@pytest.mark.parametrize(
    ("trigger", "first"),
    [
        pytest.param({"type": "deep_link", "start": "promo-7"}, "/start promo-7", id="deep-link"),
        pytest.param({"type": "command", "command": "/linked"}, "/linked@shop_bot", id="@bot"),
    ],
)
async def test_deep_links_and_addressed_commands_start_flows(
    relay: Dispatching, bot: BotRecord, trigger: dict[str, Any], first: str
) -> None:
    """`/start <parameter>` starts the flow of that deep link; a command addressed to this
    bot by name starts like a bare one, and one addressed to another bot starts nothing."""
    await add_flow(relay, {**ADDRESS, "name": "linked", "trigger": trigger})
    elsewhere = await says(relay, bot.id, "/linked@other_bot")
    produced = await says(relay, bot.id, first)

    row = await only_conversation(relay)
    assert [e.data["consumed_by"] for e in elsewhere.events] == [None]
    assert replies(produced) == [ZIP_QUESTION]
    assert (row.flow_name, row.status) == ("linked", "active")


async def test_a_button_with_a_flows_callback_data_starts_it(
    relay: Dispatching, bot: BotRecord
) -> None:
    """A press whose data is a callback trigger's starts that flow and is answered; pressed
    again while it runs, it starts nothing more."""
    await add_flow(
        relay, {**ADDRESS, "name": "pressed", "trigger": {"type": "callback", "data": "go"}}
    )
    produced = await presses(relay, bot.id, "go")
    again = await presses(relay, bot.id, "go")

    row = await only_conversation(relay)
    assert (replies(produced), answers(produced)) == ([ZIP_QUESTION], [None])
    assert conversation_events(produced) == [("conversation.started", {**WHO, "flow": "pressed"})]
    assert (replies(again), answers(again), conversation_events(again)) == ([], [None], [])
    assert (row.flow_name, row.step_id) == ("pressed", "zip")


async def test_a_start_and_its_answers_in_one_batch_all_move_it(
    relay: Dispatching, bot: BotRecord
) -> None:
    """The batch's one look-up of live conversations happens before /address starts one: the
    answers after it in the same batch still reach the conversation, Bob's do not."""
    telegram = relay.emulator.emulator
    telegram.send_message(bot.id, ADA, None, "/address")
    telegram.send_message(bot.id, BOB, None, "hello")
    telegram.send_message(bot.id, ADA, None, "10115")
    produced = await relay.process_pending(bot.id)

    row = await only_conversation(relay)
    assert replies(produced) == [ZIP_QUESTION, COUNTRY_QUESTION]
    assert [e.data["consumed_by"] for e in produced.events if e.type == "message.received"] == [
        "conversations",
        None,
        "conversations",
    ]
    assert (row.status, row.step_id) == ("active", "country")
