"""The events domain's share of processing an update: announce messages and button presses.

Runs last among the domain handlers, inside the process_update job's transaction, so an
update's events are written exactly once, with the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.bots import service as bots_service
from tgrelay.events import catalog, service
from tgrelay.events.catalog import EventType
from tgrelay.inbox.processing import ProcessedUpdate, UpdatesHandler
from tgrelay.runtime import Runtime
from tgrelay.telegram.updates import UpdateKind

_MESSAGE_EVENTS = {
    UpdateKind.MESSAGE: EventType.MESSAGE_RECEIVED,
    UpdateKind.EDITED_MESSAGE: EventType.MESSAGE_EDITED,
}


def updates_handler(rt: Runtime) -> UpdatesHandler:
    """Announce a batch's updates: each workspace's events in one write, in update order."""

    async def handle(conn: AsyncConnection, batch: Sequence[ProcessedUpdate]) -> None:
        workspace_of_bot: dict[int, str | None] = {}
        announced: dict[str, list[service.NewEvent]] = {}
        for processed in batch:
            event = event_of(processed)
            if event is None:
                continue
            bot_id = processed.bot_id
            if bot_id not in workspace_of_bot:
                workspace_of_bot[bot_id] = await bots_service.workspace_of(conn, bot_id)
            workspace_id = workspace_of_bot[bot_id]
            if workspace_id is None:
                continue  # a bot deleted since the update was stored: nobody to tell
            event_type, data = event
            announced.setdefault(workspace_id, []).append(
                service.NewEvent(event_type=event_type, data=data, trace_id=processed.trace_id)
            )
        for workspace_id, events in announced.items():
            await service.emit_many(conn, rt, workspace_id=workspace_id, events=events)

    return handle


def event_of(
    processed: ProcessedUpdate,
) -> tuple[EventType, catalog.MessageData | catalog.CallbackData] | None:
    """The event an update announces, if any: pure, from the update alone."""
    raw: dict[str, Any] = processed.raw
    event_type = _MESSAGE_EVENTS.get(processed.kind)
    if event_type is not None:
        message = raw[processed.kind.value]
        return event_type, catalog.MessageData(
            bot_id=processed.bot_id,
            update_id=processed.update_id,
            message_id=message["message_id"],
            chat=_chat(message["chat"]),
            from_=_user(message.get("from")),
            date=datetime.fromtimestamp(message["date"], UTC),
            message_thread_id=message.get("message_thread_id"),
            text=message.get("text", message.get("caption")),
            message=message,
        )
    if processed.kind is UpdateKind.CALLBACK_QUERY:
        query = raw["callback_query"]
        carrier = query.get("message") or {}
        chat = carrier.get("chat")
        return EventType.CALLBACK_RECEIVED, catalog.CallbackData(
            bot_id=processed.bot_id,
            update_id=processed.update_id,
            callback_query_id=query["id"],
            from_=catalog.UserRef.model_validate(_known(query["from"], catalog.UserRef)),
            data=query.get("data"),
            chat=None if chat is None else _chat(chat),
            message_id=carrier.get("message_id"),
            callback_query=query,
        )
    return None


def _user(raw: dict[str, Any] | None) -> catalog.UserRef | None:
    return None if raw is None else catalog.UserRef.model_validate(_known(raw, catalog.UserRef))


def _chat(raw: dict[str, Any]) -> catalog.ChatRef:
    return catalog.ChatRef.model_validate(_known(raw, catalog.ChatRef))


def _known(
    raw: dict[str, Any], model: type[catalog.ChatRef] | type[catalog.UserRef]
) -> dict[str, Any]:
    """Telegram adds fields over time; the lifted essentials keep only the ones we document."""
    return {key: value for key, value in raw.items() if key in model.model_fields}
