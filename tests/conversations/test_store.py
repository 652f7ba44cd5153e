"""The conversations store on SQLite and PostgreSQL: flow versions and which one a trigger
starts, one live conversation per participant, lists and history in order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from tgrelay.conversations import store
from tgrelay.db.engine import Database
from tgrelay.workspaces import service as workspaces

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_a_trigger_starts_only_the_newest_enabled_version(database: Database) -> None:
    """Version 2 of a flow moved from /billing to /address: /billing starts nothing any more,
    /address starts version 2, and once it is disabled nothing starts on it."""
    workspace_id = await _workspace(database)
    async with database.transaction() as conn:
        await store.add_flow(conn, _flow(workspace_id, "billing", 1, "/billing"))
        await store.add_flow(conn, _flow(workspace_id, "billing", 2, "/address"))
        await store.add_flow(conn, _flow(workspace_id, "survey", 1, "/survey"))

    async with database.transaction() as conn:
        old = await store.flow_for_trigger(conn, workspace_id, "command", "/billing")
        new = await store.flow_for_trigger(conn, workspace_id, "command", "/address")
        latest = await store.list_latest(conn, workspace_id)
        all_versions = await store.versions(conn, workspace_id, "billing")
        assert new is not None
        await store.disable_flow(conn, new.id, NOW)
        after_disable = await store.flow_for_trigger(conn, workspace_id, "command", "/address")

    assert old is None
    assert (new.name, new.version) == ("billing", 2)
    assert [(f.name, f.version) for f in latest] == [("billing", 2), ("survey", 1)]
    assert [f.version for f in all_versions] == [2, 1]
    assert after_disable is None


async def test_one_live_conversation_per_participant(database: Database) -> None:
    """A second live conversation of the same user in the same chat is refused by the
    database; once the first has ended, a new one may start."""
    workspace_id = await _workspace(database)
    async with database.transaction() as conn:
        await store.add_flow(conn, _flow(workspace_id, "billing", 1, "/billing"))

    async with database.transaction() as conn:
        await store.add_conversation(conn, _conversation(workspace_id, "cnv_1"))
    with pytest.raises(IntegrityError):
        async with database.transaction() as conn:
            await store.add_conversation(conn, _conversation(workspace_id, "cnv_2"))

    async with database.transaction() as conn:
        await store.change_conversation(
            conn, "cnv_1", status="abandoned", end_reason="cancel", ended_at=NOW, step_id=None
        )
        await store.add_conversation(
            conn, _conversation(workspace_id, "cnv_2", started_at=NOW + timedelta(minutes=1))
        )
        live = await store.live_conversation(conn, bot_id=42, chat_id=7001, user_id=7001)
        ended = await store.conversation(conn, "cnv_1", workspace_id=workspace_id)

    assert live is not None
    assert live.id == "cnv_2"
    assert ended is not None
    assert (ended.status, ended.end_reason, ended.ended_at) == ("abandoned", "cancel", NOW)


async def test_lists_filter_and_page_and_history_keeps_its_order(database: Database) -> None:
    """Conversations list newest first, filtered by flow and status and paged by start time;
    another workspace's conversation is not found by id; history comes back in order."""
    workspace_id = await _workspace(database)
    other_workspace = await _workspace(database, "Globex")
    async with database.transaction() as conn:
        await store.add_flow(conn, _flow(workspace_id, "billing", 1, "/billing"))
        await store.add_flow(conn, _flow(workspace_id, "survey", 1, "/survey", flow_id="flw_s"))
        for minute, (conversation_id, flow_id, name, user) in enumerate(
            [
                ("cnv_a", "flw_billing_1", "billing", 1),
                ("cnv_b", "flw_s", "survey", 2),
                ("cnv_c", "flw_billing_1", "billing", 3),
            ]
        ):
            await store.add_conversation(
                conn,
                _conversation(
                    workspace_id,
                    conversation_id,
                    flow_id=flow_id,
                    flow_name=name,
                    user_id=user,
                    started_at=NOW + timedelta(minutes=minute),
                ),
            )
        for step, (source, target) in enumerate(
            [(None, "ask"), ("ask", "confirm"), ("confirm", None)]
        ):
            await store.add_transition(
                conn,
                {
                    "conversation_id": "cnv_a",
                    "from_step": source,
                    "to_step": target,
                    "input_summary": f"input {step}",
                    "at": NOW + timedelta(seconds=step),
                },
            )

    async with database.transaction() as conn:
        billing = await store.list_conversations(conn, workspace_id, flow="billing", limit=10)
        first_page = await store.list_conversations(conn, workspace_id, limit=2)
        second_page = await store.list_conversations(
            conn, workspace_id, before=first_page[-1].started_at, limit=2
        )
        active = await store.list_conversations(conn, workspace_id, status="active", limit=10)
        foreign = await store.conversation(conn, "cnv_a", workspace_id=other_workspace)
        history = await store.history(conn, "cnv_a")

    assert [c.id for c in billing] == ["cnv_c", "cnv_a"]
    assert [c.id for c in first_page] == ["cnv_c", "cnv_b"]
    assert [c.id for c in second_page] == ["cnv_a"]
    assert [c.id for c in active] == ["cnv_c", "cnv_b", "cnv_a"]
    assert foreign is None
    assert [(t.from_step, t.to_step, t.input_summary) for t in history] == [
        (None, "ask", "input 0"),
        ("ask", "confirm", "input 1"),
        ("confirm", None, "input 2"),
    ]


async def _workspace(database: Database, name: str = "Acme") -> str:
    workspace, _key = await workspaces.create_workspace(database, name, now=NOW)
    return workspace.id


def _flow(
    workspace_id: str, name: str, version: int, command: str, *, flow_id: str | None = None
) -> dict[str, object]:
    return {
        "id": flow_id or f"flw_{name}_{version}",
        "workspace_id": workspace_id,
        "name": name,
        "version": version,
        "document": "{}",
        "trigger_kind": "command",
        "trigger_value": command,
        "created_at": NOW,
    }


def _conversation(
    workspace_id: str,
    conversation_id: str,
    *,
    flow_id: str = "flw_billing_1",
    flow_name: str = "billing",
    user_id: int = 7001,
    started_at: datetime = NOW,
) -> dict[str, object]:
    return {
        "id": conversation_id,
        "workspace_id": workspace_id,
        "flow_id": flow_id,
        "flow_name": flow_name,
        "bot_id": 42,
        "chat_id": 7001,
        "user_id": user_id,
        "status": "active",
        "step_id": "ask",
        "state": "{}",
        "started_at": started_at,
        "updated_at": started_at,
    }
