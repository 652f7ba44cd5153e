"""Dispatch's end: the inbound events announce every update, saying who consumed it
(in-process, tests/dispatching.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tests.dispatching import ProducedEvent, dispatching
from tgrelay.inbox.models import Handler, Inbound
from tgrelay.testing.emulator_server import RunningEmulator

ANN: dict[str, Any] = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}


async def _takes_callbacks(conn: AsyncConnection, batch: Sequence[Inbound]) -> set[int]:
    """A handler that consumes every button press and nothing else."""
    return {i.processed.row_id for i in batch if "callback_query" in i.processed.raw}


async def test_edits_and_button_presses_are_announced_with_their_consumer(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """An edited message becomes message.edited and a button press callback.received, in
    update order, each saying which handler consumed it (null: none did)."""
    async with dispatching(
        emulator, tmp_path, handlers=[Handler(name="buttons", handle=_takes_callbacks)]
    ) as relay:
        bot = await relay.connect_bot("alerts_bot")
        sent = relay.emulator.emulator.send_message(bot.id, ANN, None, "the deploy is stuck")
        message = sent["message"]
        relay.emulator.emulator.inject_update(
            bot.id,
            {"edited_message": {**message, "edit_date": message["date"] + 60, "text": "fixed"}},
        )
        relay.emulator.emulator.inject_update(
            bot.id,
            {
                "callback_query": {
                    "id": "4382bfdwdsb323b2d9",
                    "from": ANN,
                    "chat_instance": "-8123456789",
                    "data": "ack:incident-17",
                    "message": {
                        **message,
                        "from": {"id": bot.id, "is_bot": True, "first_name": "Alerts"},
                    },
                }
            },
        )
        produced = await relay.process_pending(bot.id)

    workspace = relay.principal.workspace_id
    assert [(e.type, e.workspace_id) for e in produced.events] == [
        ("message.received", workspace),
        ("message.edited", workspace),
        ("callback.received", workspace),
    ]
    received, edited, pressed = produced.events
    assert (received.data["text"], received.data["consumed_by"]) == ("the deploy is stuck", None)
    assert (edited.data["text"], edited.data["consumed_by"]) == ("fixed", None)
    assert edited.data["message"]["edit_date"] == message["date"] + 60
    assert _press(pressed) == ("ack:incident-17", ANN["id"], message["chat"]["id"], "buttons")
    assert produced.jobs == []


def _press(event: ProducedEvent) -> tuple[str, int, int, str | None]:
    data = event.data
    return (data["data"], data["from"]["id"], data["chat"]["id"], data["consumed_by"])
