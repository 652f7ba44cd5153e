"""Updates as the intake accepts them, for the writer's tests."""

from __future__ import annotations

from datetime import UTC, datetime

from tgrelay.inbox.models import IncomingUpdate, UpdateSource

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def incoming(
    update_id: int, chat_id: int | None = 10, bot_id: int = 1, *, payload: str | None = None
) -> IncomingUpdate:
    """A webhook message update of `bot_id` in `chat_id`, received at NOW; its JSON only
    the update_id unless `payload` is given."""
    return IncomingUpdate(
        bot_id=bot_id,
        update_id=update_id,
        kind="message",
        chat_id=chat_id,
        source=UpdateSource.WEBHOOK,
        payload=f'{{"update_id": {update_id}}}' if payload is None else payload,
        received_at=NOW,
    )
