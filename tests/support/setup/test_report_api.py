"""GET /v1/support/report over real rows: the window's figures for a desk, the defaults, and
wrong windows refused as problem+json."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tgrelay.db import tables
from tgrelay.support.models import AutoAnswerOutcome, TicketStatus

from .conftest import START, Desk, Tenant, problem

AGENT = 7


async def a_desk(desk: Desk, tenant: Tenant | None = None, bot: str = "a") -> tuple[Tenant, str]:
    """A desk of a new workspace (or of `tenant`) on a bot of its own."""
    owner = tenant or await desk.tenant(f"Team {bot}")
    record = await desk.bot(owner, f"{bot}_desk_bot")
    connection_id = await desk.connection(owner, record, desk.forum(record))
    created = await desk.api.post(
        "/v1/support/desks",
        json={"bot_id": record.id, "connection_id": connection_id},
        headers=owner.admin,
    )
    return owner, str(created.json()["id"])


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


async def ticket(
    desk: Desk,
    tenant: Tenant,
    desk_id: str,
    number: int,
    created: float,
    *,
    answered: float | None = None,
    resolved: tuple[float, str] | None = None,
    assigned: float | None = None,
    auto_answer: AutoAnswerOutcome | None = None,
) -> str:
    """A ticket row with its messages, changes and auto-answer, as the desk would write them."""
    ticket_id = f"tkt_{desk_id[-4:]}{number}"
    async with desk.rt.db.transaction() as conn:
        await conn.execute(
            tables.tickets.insert().values(
                id=ticket_id,
                workspace_id=tenant.workspace_id,
                number=number,
                desk_id=desk_id,
                bot_id=1,
                customer_chat_id=100 + number,
                customer_id=100 + number,
                customer='{"first_name": "C"}',
                subject="help",
                status=TicketStatus.RESOLVED if resolved else TicketStatus.NEW,
                topic_chat_id=-1,
                created_at=at(created),
                updated_at=at(created),
                first_response_at=None if answered is None else at(answered),
                resolved_at=None if resolved is None else at(resolved[0]),
            )
        )
        said: list[tuple[str, float, int | None]] = [("customer", created, None)]
        changes: list[dict[str, Any]] = []
        if answered is not None:
            said.append(("agent", answered, AGENT))
            changes.append({"field": "status", "value": "open", "at": at(answered)})
        if assigned is not None:
            changes.append({"field": "assignee", "value": str(AGENT), "at": at(assigned)})
        if resolved is not None:
            changes.append(
                {"field": "status", "value": "resolved", "at": at(resolved[0]), "by": resolved[1]}
            )
        for direction, when, author in said:
            await conn.execute(
                tables.ticket_messages.insert().values(
                    ticket_id=ticket_id,
                    direction=direction,
                    source="telegram",
                    author_id=author,
                    kind="text",
                    text="hi",
                    relay_status="sent",
                    created_at=at(when),
                )
            )
        for change in sorted(changes, key=lambda c: c["at"]):
            await conn.execute(
                tables.ticket_changes.insert().values(
                    ticket_id=ticket_id,
                    field=change["field"],
                    value=change["value"],
                    changed_by=change.get("by", f"agent:{AGENT}"),
                    at=change["at"],
                )
            )
        if auto_answer is not None:
            await conn.execute(
                tables.support_auto_answers.insert().values(
                    ticket_id=ticket_id,
                    article_id="art_1",
                    title="Billing",
                    score=1.0,
                    outcome=auto_answer,
                    asked_at=at(created),
                )
            )
    return ticket_id


async def test_a_desks_report(desk: Desk) -> None:
    """Opened, resolved, times, SLA attainment, breaches, deflection and the agent's row."""
    acme, desk_id = await a_desk(desk)
    _, other_desk = await a_desk(desk, acme, bot="b")
    put = await desk.api.put(
        f"/v1/support/desks/{desk_id}/sla", json={"first_response": 3600}, headers=acme.admin
    )
    async with desk.rt.db.transaction() as conn:
        await conn.execute(
            tables.support_agents.insert().values(
                workspace_id=acme.workspace_id,
                telegram_user_id=AGENT,
                name="Ann",
                active=True,
                created_at=START,
                updated_at=START,
            )
        )
    await ticket(desk, acme, desk_id, 1, 0, answered=600, assigned=60, resolved=(3000, "agent:7"))
    late = await ticket(desk, acme, desk_id, 2, 60)
    await ticket(
        desk,
        acme,
        desk_id,
        3,
        120,
        resolved=(300, "customer"),
        auto_answer=AutoAnswerOutcome.DEFLECTED,
    )
    await ticket(desk, acme, desk_id, 4, -10 * 86400, resolved=(-9 * 86400, "agent:7"))
    await ticket(desk, acme, other_desk, 5, 0)
    async with desk.rt.db.transaction() as conn:
        await conn.execute(
            tables.ticket_sla_breaches.insert().values(
                ticket_id=late,
                metric="first_response",
                due_at=at(3660),
                breached_at=at(3660),
                recorded_at=at(3661),
            )
        )
    desk.clock.advance(7200)

    got = await desk.api.get(
        "/v1/support/report",
        params={"desk_id": desk_id, "from": "2026-01-05T08:00:00Z"},
        headers=acme.reader,
    )

    assert put.status_code == 201
    assert (got.status_code, got.json()) == (
        200,
        {
            "desk_id": desk_id,
            "from": "2026-01-05T08:00:00Z",
            "to": "2026-01-05T11:00:00Z",
            "times": "wall_clock",
            "opened": 3,
            "resolved": 2,
            "first_response": {"count": 1, "p50_seconds": 600.0, "p90_seconds": 600.0},
            "resolution": {"count": 2, "p50_seconds": 180.0, "p90_seconds": 3000.0},
            "sla": {
                "first_response": {"met": 1, "breached": 1, "open": 1, "rate": 0.5},
                "next_response": {"met": 0, "breached": 0, "open": 0, "rate": None},
                "resolution": {"met": 0, "breached": 0, "open": 0, "rate": None},
            },
            "breaches": {"first_response": 1, "next_response": 0, "resolution": 0},
            "deflection": {
                "auto_answers": {"waiting": 0, "deflected": 1, "declined": 0, "timed_out": 0},
                "deflected": 1,
                "rate": pytest.approx(1 / 3),
            },
            "agents": [
                {
                    "agent_id": AGENT,
                    "name": "Ann",
                    "assigned": 1,
                    "first_responses": 1,
                    "resolved": 1,
                    "first_response_p50_seconds": 600.0,
                }
            ],
        },
    )


async def test_defaults_to_the_last_seven_days_of_the_workspace(desk: Desk) -> None:
    """Without parameters the window is the 7 days up to now, over every desk of the caller's
    workspace only."""
    acme, desk_id = await a_desk(desk)
    other, other_desk = await a_desk(desk, bot="b")
    await ticket(desk, acme, desk_id, 1, -8 * 86400)
    await ticket(desk, acme, desk_id, 2, -6 * 86400)
    await ticket(desk, other, other_desk, 3, -1)

    got = await desk.api.get("/v1/support/report", headers=acme.reader)

    body = got.json()
    assert (got.status_code, body["desk_id"], body["from"], body["to"], body["opened"]) == (
        200,
        None,
        "2025-12-29T09:00:00Z",
        "2026-01-05T09:00:00Z",
        1,
    )


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"from": "2026-01-05T09:00:00"}, "from needs a UTC offset (e.g. 2026-01-05T09:00:00Z)"),
        (
            {"from": "2026-01-05T09:00:00Z", "to": "2026-01-05T09:00:00Z"},
            "from must be before to",
        ),
        ({"from": "2025-01-01T00:00:00Z"}, "the window may span at most 92 days"),
    ],
)
async def test_wrong_windows_are_refused(desk: Desk, params: dict[str, str], detail: str) -> None:
    """A time without an offset, an empty window and one over 92 days are 422 naming why."""
    acme, _desk_id = await a_desk(desk)

    got = await desk.api.get("/v1/support/report", params=params, headers=acme.reader)

    assert (got.status_code, got.json()) == (422, problem(422, "InvalidInput", detail))


async def test_unparsable_time_and_unknown_desk(desk: Desk) -> None:
    """A `from` that is no time is the schema's 422; another workspace's desk is 404."""
    acme, _ = await a_desk(desk)
    _, other_desk = await a_desk(desk, bot="b")

    bad = await desk.api.get("/v1/support/report", params={"from": "monday"}, headers=acme.reader)
    foreign = await desk.api.get(
        "/v1/support/report", params={"desk_id": other_desk}, headers=acme.reader
    )

    assert (bad.status_code, bad.json()["title"], bad.json()["errors"][0]["loc"]) == (
        422,
        "InvalidRequest",
        ["query", "from"],
    )
    assert (foreign.status_code, foreign.json()) == (
        404,
        problem(404, "NotFound", f"no desk {other_desk}"),
    )
