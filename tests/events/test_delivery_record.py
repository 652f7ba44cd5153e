"""Recording many attempts in one transaction gives what recording each alone would.

The webhook lane commits the outcomes of every attempt that finished meanwhile together
(`events.delivery`); an endpoint with a failure among them must see its breaker move as if
each outcome had committed by itself, in the order the attempts finished.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tgrelay.db import tables
from tgrelay.events import catalog, delivery, schedule, service, store
from tgrelay.events.catalog import EventType
from tgrelay.events.models import DeliveryStatus
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.clock import Clock
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        webhooks_allow_private=True,
        webhooks_breaker_failures=3,
        log_level="WARNING",
    )
    async with open_runtime(settings, clock=Clock(start=T0)) as runtime:
        yield runtime


async def _targets(rt: Runtime, count: int) -> list[store.Target]:
    """`count` pending deliveries to one endpoint."""
    workspace, _ = await workspaces.create_workspace(rt.db, "Acme", now=T0)
    created = await service.create_endpoint(
        rt,
        Principal(workspace_id=workspace.id, actor="test"),
        url="http://127.0.0.1:9/hook",
        event_types=None,
        description=None,
    )
    removed = [
        service.NewEvent(
            event_type=EventType.GROUP_STATUS_CHANGED,
            data=catalog.GroupStatusData(
                connection_id=f"conn_{number}", bot_id=1, chat_id=-1, status="bot_removed"
            ),
        )
        for number in range(count)
    ]
    async with rt.db.transaction() as conn:
        event_ids = await service.emit_many(conn, rt, workspace_id=workspace.id, events=removed)
    async with rt.db.engine.connect() as conn:
        ids = list(await conn.scalars(select(tables.deliveries.c.id).order_by("id")))
        found = await store.targets(conn, ids)
    targets = [found[delivery_id] for delivery_id in ids]
    # One delivery per event, in the order emit_many was given them.
    assert [target.delivery.event_id for target in targets] == event_ids
    assert all(target.endpoint.id == created.endpoint.id for target in targets)
    return targets


def _attempted(target: store.Target, status_code: int) -> delivery.Attempted:
    result = delivery.Result(
        started_at=T0,
        duration_ms=3,
        status_code=status_code,
        response_body="",
        retry_after=None,
        error=None if status_code < 300 else f"HTTP {status_code}",
    )
    return delivery.Attempted(
        target=target, result=result, outcome=schedule.classify(status_code), rand=0.5
    )


async def _record(rt: Runtime, outcomes: list[delivery.Outcome]) -> None:
    async with rt.db.transaction() as conn:
        await delivery.record_outcomes(
            conn,
            rt,
            outcomes,
            rules=delivery.schedule_of(rt),
            policy=delivery.policy_of(rt),
        )


async def _state(rt: Runtime) -> tuple[list[str], int, int, bool]:
    """Delivery statuses (by id), attempt rows, the breaker's failure streak, failing?"""
    async with rt.db.engine.connect() as conn:
        statuses = list(
            await conn.scalars(select(tables.deliveries.c.status).order_by(tables.deliveries.c.id))
        )
        attempts = await conn.scalar(select(func.count()).select_from(tables.delivery_attempts))
        endpoint = (await conn.execute(select(tables.endpoints))).one()
    return (
        statuses,
        int(attempts or 0),
        endpoint.consecutive_failures,
        endpoint.failing_since is not None,
    )


async def test_successes_together_are_each_delivered_and_recorded(rt: Runtime) -> None:
    targets = await _targets(rt, 3)
    await _record(rt, [_attempted(target, 200) for target in targets])
    assert await _state(rt) == (["delivered"] * 3, 3, 0, False)
    async with rt.db.engine.connect() as conn:
        rows = (await conn.execute(select(tables.deliveries))).all()
    assert {(row.attempts, row.schedule_attempts, row.last_status_code) for row in rows} == {
        (1, 1, 200)
    }


async def test_a_success_after_a_failure_clears_the_streak(rt: Runtime) -> None:
    first, second = await _targets(rt, 2)
    await _record(rt, [_attempted(first, 500), _attempted(second, 204)])
    assert await _state(rt) == (["pending", "delivered"], 2, 0, False)


async def test_a_failure_after_a_success_starts_a_streak(rt: Runtime) -> None:
    first, second = await _targets(rt, 2)
    await _record(rt, [_attempted(first, 204), _attempted(second, 500)])
    assert await _state(rt) == (["delivered", "pending"], 2, 1, True)


async def test_failures_together_count_one_each_and_a_given_up_delivery_is_dead(
    rt: Runtime,
) -> None:
    first, second, third = await _targets(rt, 3)
    given_up = delivery.GivenUp(delivery_id=third.delivery.id, reason="endpoint deleted")
    await _record(rt, [_attempted(first, 500), _attempted(second, 503), given_up])
    assert await _state(rt) == (
        ["pending", "pending", DeliveryStatus.DEAD_LETTER.value],
        2,
        2,
        True,
    )


async def test_one_read_gives_each_attempt_its_own_endpoint_and_body(rt: Runtime) -> None:
    """Attempts to two endpoints read together: each gets its endpoint (URL, status, secret),
    and the body its delivery holds (a pinned version's) or else its event's."""
    workspace, _ = await workspaces.create_workspace(rt.db, "Acme", now=T0)
    principal = Principal(workspace_id=workspace.id, actor="test")
    urls = ["http://127.0.0.1:9/one", "http://127.0.0.1:9/two"]
    for url in urls:
        await service.create_endpoint(rt, principal, url=url, event_types=None, description=None)
    removed = service.NewEvent(
        event_type=EventType.GROUP_STATUS_CHANGED,
        data=catalog.GroupStatusData(
            connection_id="conn_1", bot_id=1, chat_id=-1, status="bot_removed"
        ),
    )
    async with rt.db.transaction() as conn:
        await service.emit_many(conn, rt, workspace_id=workspace.id, events=[removed, removed])
        rows = (await conn.execute(select(tables.deliveries).order_by("id"))).all()
        pinned = rows[-1]
        await conn.execute(
            tables.deliveries.update()
            .where(tables.deliveries.c.id == pinned.id)
            .values(body='{"pinned":true}')
        )
    async with rt.db.engine.connect() as conn:
        found = await store.targets(conn, [row.id for row in rows])
        endpoint_urls = dict(
            (await conn.execute(select(tables.endpoints.c.id, tables.endpoints.c.url))).all()
        )
        event_bodies = dict(
            (await conn.execute(select(tables.events.c.id, tables.events.c.body))).all()
        )
    assert len(found) == 4
    for row in rows:
        target = found[row.id]
        assert target.delivery.endpoint_id == row.endpoint_id == target.endpoint.id
        assert target.endpoint.url == endpoint_urls[row.endpoint_id]
        expected_body = '{"pinned":true}' if row.id == pinned.id else event_bodies[row.event_id]
        assert target.body == expected_body
    assert {found[row.id].endpoint.url for row in rows} == set(urls)
    assert len({found[row.id].secrets.current for row in rows}) == 2
