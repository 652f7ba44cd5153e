"""Events emitted outside any job (e.g. by the API) wake the process's worker once committed.

The webhook lane's looks slow down while it is idle (`queue.pacing`), so a delivery enqueued
in this process must not wait for one: the transaction that enqueues it wakes the worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tgrelay.events import catalog, service
from tgrelay.events.catalog import EventType
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.clock import Clock
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, webhooks_allow_private=True, log_level="WARNING"
    )
    async with open_runtime(settings, clock=Clock(start=T0)) as runtime:
        yield runtime


def removed(connection_id: str) -> service.NewEvent:
    return service.NewEvent(
        event_type=EventType.GROUP_STATUS_CHANGED,
        data=catalog.GroupStatusData(
            connection_id=connection_id, bot_id=1, chat_id=-1, status="bot_removed"
        ),
    )


async def test_an_emitted_delivery_wakes_the_worker_after_its_commit(rt: Runtime) -> None:
    """No wake while the transaction is open, one after its commit, none for an event that no
    endpoint subscribes to (nothing was enqueued)."""
    wakes: list[str] = []
    rt.notify_queue = wakes.append
    workspace, _ = await workspaces.create_workspace(rt.db, "Acme", now=T0)
    unsubscribed, _ = await workspaces.create_workspace(rt.db, "Quiet", now=T0)
    await service.create_endpoint(
        rt,
        Principal(workspace_id=workspace.id, actor="test"),
        url="http://127.0.0.1:9/hook",
        event_types=None,
        description=None,
    )
    async with rt.db.transaction() as conn:
        await service.emit_many(conn, rt, workspace_id=unsubscribed.id, events=[removed("c0")])
    after_unsubscribed = list(wakes)
    async with rt.db.transaction() as conn:
        await service.emit_many(
            conn, rt, workspace_id=workspace.id, events=[removed("c1"), removed("c2")]
        )
        in_transaction = list(wakes)
    assert (after_unsubscribed, in_transaction, wakes) == ([], [], ["webhooks"])
