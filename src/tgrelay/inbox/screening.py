"""Inbound abuse limits: which stored updates reach the domain handlers.

Runs first in the process_update batch, in the jobs' transaction (see docs/design-notes.md,
"Issue 17: inbound abuse limits"): an update kept back is marked on its row (`throttled`,
`duplicate`), its job ends as done, and nothing else happens for it; the mark, the chat's
window and the chat.throttled event commit together with the jobs, so a retried batch
decides the same way and a restart forgets nothing. Every update was stored and
acknowledged before it got here: a limit never loses one.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.bots import service as bots_service
from tgrelay.db import dialects, tables
from tgrelay.db import engine as db_engine
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.inbox import chat_limit
from tgrelay.inbox.models import Disposition, ProcessedUpdate
from tgrelay.runtime import Runtime
from tgrelay.telegram import updates as update_facts

log = structlog.get_logger(__name__)


def message_key(processed: ProcessedUpdate) -> str | None:
    """The "chat_id:message_id:edit_date" of the message an update carries (None: none),
    prefixed with its business connection's digest for a business chat's message.

    Telegram never sends one message twice under new update_ids; a copy means a replay
    (a leaked secret) or a bot served twice. An edit has its own edit_date, so it is new.
    """
    body = processed.raw.get(processed.kind.value)
    if not isinstance(body, dict):
        return None
    chat_id = update_facts.chat_id_of(processed.raw, processed.kind)
    message_id = body.get("message_id")
    if chat_id is None or not isinstance(message_id, int) or isinstance(message_id, bool):
        return None
    edit_date = body.get("edit_date")
    key = f"{chat_id}:{message_id}:{edit_date if isinstance(edit_date, int) else 0}"
    connection = body.get("business_connection_id")
    if isinstance(connection, str):
        # A business chat numbers its messages apart from the bot's private chat with the
        # same user (same chat id): without the connection, message 5 there would pass for
        # a copy of message 5 here. Hashed: the column holds 64 characters.
        return f"b{hashlib.sha256(connection.encode()).hexdigest()[:12]}:{key}"
    return key


class Screen:
    """Keeps duplicate and throttled updates of a batch from the domain handlers."""

    def __init__(
        self, rt: Runtime, *, limit: chat_limit.ChatLimit | None, deduplicate: bool
    ) -> None:
        self._rt = rt
        self._limit = limit
        self._deduplicate = deduplicate

    async def __call__(
        self, conn: AsyncConnection, batch: Sequence[ProcessedUpdate]
    ) -> list[ProcessedUpdate]:
        """The updates of the batch to handle, in order; the others are marked."""
        marks: dict[int, Disposition] = {}  # updates.id → why it is kept back
        if self._deduplicate:
            await self._mark_duplicates(conn, batch, marks)
        throttle_starts: list[tuple[ProcessedUpdate, chat_limit.Window]] = []
        if self._limit is not None:
            fresh = [p for p in batch if p.row_id not in marks]
            throttle_starts = await self._apply_limit(conn, self._limit, fresh, marks)
        if not marks:
            return list(batch)
        await conn.execute(
            _MARK, [{"row_id": row_id, "mark": mark.value} for row_id, mark in marks.items()]
        )
        await self._announce(conn, throttle_starts)
        kept_back = [p for p in batch if p.row_id in marks]
        db_engine.after_commit(conn, functools.partial(self._count, kept_back, marks))
        return [p for p in batch if p.row_id not in marks]

    async def _mark_duplicates(
        self,
        conn: AsyncConnection,
        batch: Sequence[ProcessedUpdate],
        marks: dict[int, Disposition],
    ) -> None:
        """Mark copies of a message seen before (or earlier in the batch); remember the rest."""
        keyed = [(p, key) for p in batch if (key := message_key(p)) is not None]
        if not keyed:
            return
        found = await conn.execute(
            _KNOWN_KEYS,
            {
                "bot_ids": sorted({p.bot_id for p, _ in keyed}),
                "keys": sorted({key for _, key in keyed}),
            },
        )
        # A row that is this very update is no copy of it (the cross product over-selects).
        seen = {(row.bot_id, row.message_key): row.id for row in found}
        remembered: list[dict[str, Any]] = []
        for processed, key in keyed:
            first = seen.setdefault((processed.bot_id, key), processed.row_id)
            if first != processed.row_id:
                marks[processed.row_id] = Disposition.DUPLICATE
            else:
                remembered.append({"row_id": processed.row_id, "key": key})
        if remembered:
            await conn.execute(_REMEMBER_KEY, remembered)

    async def _apply_limit(
        self,
        conn: AsyncConnection,
        limit: chat_limit.ChatLimit,
        batch: Sequence[ProcessedUpdate],
        marks: dict[int, Disposition],
    ) -> list[tuple[ProcessedUpdate, chat_limit.Window]]:
        """Count each update in its chat's window; mark those over the limit. Returns the
        first throttled update of each window that began throttling, with the window."""
        chats = [
            (p, (p.bot_id, chat_id))
            for p in batch
            if (chat_id := update_facts.chat_id_of(p.raw, p.kind)) is not None
        ]
        if not chats:
            return []
        rows = await conn.execute(
            _WINDOWS,
            {
                "bot_ids": sorted({bot_id for _, (bot_id, _) in chats}),
                "chat_ids": sorted({chat_id for _, (_, chat_id) in chats}),
            },
        )
        windows = {
            (row.bot_id, row.chat_id): chat_limit.Window(
                started_at=row.started_at, count=row._mapping["count"], announced=row.announced
            )
            for row in rows
        }
        changed: set[tuple[int, int]] = set()
        starts: list[tuple[ProcessedUpdate, chat_limit.Window]] = []
        for processed, key in chats:
            window, verdict = chat_limit.admit(limit, windows.get(key), at=processed.received_at)
            windows[key] = window
            changed.add(key)
            if verdict is not chat_limit.Verdict.ADMITTED:
                marks[processed.row_id] = Disposition.THROTTLED
            if verdict is chat_limit.Verdict.THROTTLED_FIRST:
                starts.append((processed, window))
        # In key order: two transactions upserting the same rows take their locks alike.
        await conn.execute(
            _upsert_window(conn.dialect.name),
            [
                {
                    "bot_id": bot_id,
                    "chat_id": chat_id,
                    "started_at": windows[(bot_id, chat_id)].started_at,
                    "count": windows[(bot_id, chat_id)].count,
                    "announced": windows[(bot_id, chat_id)].announced,
                }
                for bot_id, chat_id in sorted(changed)
            ],
        )
        return starts

    async def _announce(
        self,
        conn: AsyncConnection,
        starts: Sequence[tuple[ProcessedUpdate, chat_limit.Window]],
    ) -> None:
        """One chat.throttled event per window that began throttling, to the bot's workspace."""
        assert self._limit is not None or not starts
        by_workspace: dict[str, list[events.NewEvent]] = {}
        workspace_of_bot: dict[int, str | None] = {}
        for processed, window in starts:
            bot_id = processed.bot_id
            if bot_id not in workspace_of_bot:
                workspace_of_bot[bot_id] = await bots_service.workspace_of(conn, bot_id)
            workspace_id = workspace_of_bot[bot_id]
            chat_id = update_facts.chat_id_of(processed.raw, processed.kind)
            log.info("chat.throttled", bot_id=bot_id, chat_id=chat_id, at=window.started_at)
            if workspace_id is None or chat_id is None or self._limit is None:
                continue  # a bot deleted since the update was stored: nobody to tell
            data = catalog.ChatThrottledData(
                bot_id=bot_id,
                chat_id=chat_id,
                update_id=processed.update_id,
                limit=self._limit.count,
                window_seconds=self._limit.window.total_seconds(),
                window_started_at=window.started_at,
            )
            by_workspace.setdefault(workspace_id, []).append(
                events.NewEvent(event_type=EventType.CHAT_THROTTLED, data=data)
            )
        for workspace_id, new_events in by_workspace.items():
            await events.emit_many(conn, self._rt, workspace_id=workspace_id, events=new_events)

    def _count(self, kept_back: Sequence[ProcessedUpdate], marks: dict[int, Disposition]) -> None:
        """Counted once the marks are committed: a batch rolled back and retried counts once."""
        metric = self._rt.metrics.updates_kept_back
        for processed in kept_back:
            metric.labels(str(processed.bot_id), marks[processed.row_id].value).inc()


def screen_of(rt: Runtime) -> Screen | None:
    """The screen the settings ask for; None when every inbound limit is off (the default)."""
    settings = rt.settings
    limit = (
        None
        if settings.inbound_chat_limit is None
        else chat_limit.ChatLimit(
            count=settings.inbound_chat_limit[0],
            window=timedelta(seconds=settings.inbound_chat_limit[1]),
        )
    )
    if limit is None and not settings.inbound_deduplicate:
        return None
    return Screen(rt, limit=limit, deduplicate=settings.inbound_deduplicate)


_updates = tables.updates
_MARK = (
    update(_updates)
    .where(_updates.c.id == bindparam("row_id"))
    .values(disposition=bindparam("mark"))
)
_REMEMBER_KEY = (
    update(_updates)
    .where(_updates.c.id == bindparam("row_id"))
    .values(message_key=bindparam("key"))
)
_KNOWN_KEYS = select(_updates.c.id, _updates.c.bot_id, _updates.c.message_key).where(
    _updates.c.bot_id.in_(bindparam("bot_ids", expanding=True)),
    _updates.c.message_key.in_(bindparam("keys", expanding=True)),
    # Repeated from ix_updates_bot_id_message_key's condition: SQLite's planner then uses it.
    _updates.c.message_key.is_not(None),
)
_windows = tables.chat_windows
_WINDOWS = select(_windows).where(
    _windows.c.bot_id.in_(bindparam("bot_ids", expanding=True)),
    _windows.c.chat_id.in_(bindparam("chat_ids", expanding=True)),
)


@functools.cache
def _upsert_window(dialect: str) -> Any:
    statement = dialects.upsert(dialect, _windows)
    return statement.on_conflict_do_update(
        index_elements=["bot_id", "chat_id"],
        set_={name: statement.excluded[name] for name in ("started_at", "count", "announced")},
    )
