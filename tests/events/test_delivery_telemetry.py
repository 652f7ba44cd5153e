"""What deliveries tell operators and receivers: the event's trace goes out as `traceparent`,
each POST is counted by outcome with its latency, and dead letters are counted once their
transaction commits."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.events.test_delivery_record import T0, _attempted, _record, _state
from tgrelay import tracing
from tgrelay.db import tables
from tgrelay.events import catalog, delivery, service, store
from tgrelay.events.catalog import EventType
from tgrelay.http import guard, transport
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.clock import Clock
from tgrelay.testing.receiver import Delivery, receiving
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
EXPLICIT = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        _env_file=None, data_dir=tmp_path, webhooks_allow_private=True, log_level="WARNING"
    )
    async with open_runtime(settings, clock=Clock(start=T0)) as runtime:
        yield runtime


def _removed(number: int, trace_id: str | None = None) -> service.NewEvent:
    return service.NewEvent(
        event_type=EventType.GROUP_STATUS_CHANGED,
        data=catalog.GroupStatusData(
            connection_id=f"conn_{number}", bot_id=1, chat_id=-1, status="bot_removed"
        ),
        trace_id=trace_id,
    )


async def _emitted(rt: Runtime, url: str, events: list[service.NewEvent]) -> list[store.Target]:
    """Emit `events` (inside the TRACE's job, as a worker runs it) to one endpoint at `url`."""
    workspace, _ = await workspaces.create_workspace(rt.db, "Acme", now=T0)
    await service.create_endpoint(
        rt,
        Principal(workspace_id=workspace.id, actor="test"),
        url=url,
        event_types=None,
        description=None,
    )
    with tracing.bound(TRACE):
        async with rt.db.transaction() as conn:
            await service.emit_many(conn, rt, workspace_id=workspace.id, events=events)
    async with rt.db.engine.connect() as conn:
        ids = list(await conn.scalars(select(tables.deliveries.c.id).order_by("id")))
        found = await store.targets(conn, ids)
    return [found[delivery_id] for delivery_id in ids]


async def _job_traces(rt: Runtime) -> list[str | None]:
    async with rt.db.engine.connect() as conn:
        return list(
            await conn.scalars(
                select(tables.jobs.c.trace_id)
                .where(tables.jobs.c.kind == service.DELIVER_EVENT)
                .order_by(tables.jobs.c.id)
            )
        )


async def test_events_and_their_deliveries_join_the_current_or_given_trace(rt: Runtime) -> None:
    """An event emitted in a job takes its trace; one given a trace keeps it; so do their
    deliveries and delivery jobs."""
    targets = await _emitted(rt, "http://127.0.0.1:9/hook", [_removed(1), _removed(2, EXPLICIT)])
    assert [target.trace_id for target in targets] == [TRACE, EXPLICIT]
    assert await _job_traces(rt) == [TRACE, EXPLICIT]


async def test_a_delivery_sends_traceparent_and_is_counted_with_its_latency(
    rt: Runtime,
) -> None:
    """The POST carries `traceparent` with the event's trace id; the attempt is counted by outcome
    (here failed: a 500) and its duration observed."""

    async def broken(request: Delivery) -> int:
        return 500

    client = transport.Client(guard.TargetPolicy(allow_private=True))
    try:
        async with receiving(broken) as receiver:
            [target] = await _emitted(rt, receiver.url, [_removed(1)])
            result = await delivery._post(rt, client, target)
            [received] = receiver.receiver.deliveries
    finally:
        await client.aclose()
    assert result.status_code == 500
    assert re.fullmatch(f"00-{TRACE}-[0-9a-f]{{16}}-01", received.headers["traceparent"])
    sample = rt.metrics.registry.get_sample_value
    assert [
        sample("tgrelay_delivery_attempts_total", {"outcome": "failed"}),
        sample("tgrelay_delivery_attempts_total", {"outcome": "delivered"}),
        sample("tgrelay_delivery_latency_seconds_count"),
    ] == [1.0, None, 1.0]


async def test_dead_letters_are_counted_when_their_transaction_commits(rt: Runtime) -> None:
    """A commit that fails counts nothing; a 410 counts its delivery and those its endpoint's
    disabling gave up, once."""
    targets = await _emitted(rt, "http://127.0.0.1:9/hook", [_removed(n) for n in range(3)])
    dead_letters = "tgrelay_delivery_dead_letters_total"

    class Undone(Exception):
        pass

    async def give_up_then_fail() -> None:
        async with rt.db.transaction() as conn:
            await delivery.record_outcomes(
                conn,
                rt,
                [delivery.GivenUp(delivery_id=targets[0].delivery.id, reason="endpoint deleted")],
                rules=delivery.schedule_of(rt),
                policy=delivery.policy_of(rt),
            )
            raise Undone

    with pytest.raises(Undone):
        await give_up_then_fail()
    undone = rt.metrics.registry.get_sample_value(dead_letters)

    await _record(rt, [_attempted(targets[0], 410)])
    statuses, _, _, _ = await _state(rt)
    assert (undone, statuses) == (0.0, ["dead_letter"] * 3)
    assert rt.metrics.registry.get_sample_value(dead_letters) == 3.0
