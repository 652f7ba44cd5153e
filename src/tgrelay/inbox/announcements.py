"""The inbound events: what dispatch announces at its end, for every update of a batch.

`message.received`, `message.edited` and `callback.received` say which handler consumed the
update (`consumed_by`), so an app leaves alone what tgrelay already answered. They are
written in the process_update jobs' transaction, so an update's events exist exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.inbox.models import Inbound, ProcessedUpdate
from tgrelay.runtime import Runtime
from tgrelay.telegram.updates import UpdateKind

_MESSAGE_EVENTS = {
    UpdateKind.MESSAGE: EventType.MESSAGE_RECEIVED,
    UpdateKind.EDITED_MESSAGE: EventType.MESSAGE_EDITED,
}


async def announce(
    conn: AsyncConnection,
    rt: Runtime,
    batch: Sequence[Inbound],
    consumed_by: Mapping[int, str],
) -> None:
    """Each workspace's inbound events of the batch in one write, in update order;
    `consumed_by` maps an update's row id to the handler that consumed it."""
    announced: dict[str, list[events.NewEvent]] = {}
    for inbound in batch:
        processed = inbound.processed
        event = event_of(processed, consumed_by=consumed_by.get(processed.row_id))
        if event is None:
            continue
        event_type, data = event
        announced.setdefault(inbound.workspace_id, []).append(
            events.NewEvent(event_type=event_type, data=data, trace_id=processed.trace_id)
        )
    for workspace_id, new_events in announced.items():
        await events.emit_many(conn, rt, workspace_id=workspace_id, events=new_events)


def event_of(
    processed: ProcessedUpdate, *, consumed_by: str | None
) -> tuple[EventType, catalog.MessageData | catalog.CallbackData] | None:
    """The event an update announces, if any: pure, from the update and its consumer."""
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
            consumed_by=consumed_by,
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
            consumed_by=consumed_by,
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
    documented = _DOCUMENTED[model]
    return {key: value for key, value in raw.items() if key in documented}


# Read once: pydantic's `model_fields` is a property that cost more per lookup than the
# rest of an update's event (7 % of an updates batch, in a py-spy profile of serve).
_DOCUMENTED: dict[type[Any], frozenset[str]] = {
    model: frozenset(model.model_fields) for model in (catalog.ChatRef, catalog.UserRef)
}
