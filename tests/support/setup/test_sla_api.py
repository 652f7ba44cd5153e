"""/v1/support/desks/{id}/sla: a desk's SLA policy is created, read, replaced and deleted,
and a wrong one is refused with an error that names what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import STAMP, Desk, Tenant, problem

POLICY: dict[str, Any] = {
    "first_response": 3600,
    "next_response": 1800,
    "resolution": 86400,
    "business_hours": {
        "timezone": "Europe/Berlin",
        "weekly": {"mon": [["09:00", "12:00"], ["13:00", "17:00"]], "fri": [["09:00", "24:00"]]},
        "holidays": ["2026-12-25"],
    },
    "pause_statuses": ["pending"],
    "escalation": [
        {"warn_before_seconds": 600, "action": "mention", "users": ["@lead_agent", 42]},
        {"after_seconds": 0, "metrics": ["first_response"], "action": "emit"},
    ],
}


def view(desk_id: str, policy: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The policy as the API shows it: every field, defaults filled in."""
    steps = [
        {
            "after_seconds": None,
            "warn_before_seconds": None,
            "metrics": None,
            "users": None,
            "user_id": None,
            "connection_id": None,
            "to": None,
            "text": None,
            **step,
        }
        for step in policy.get("escalation", [])
    ]
    hours = policy.get("business_hours")
    return {
        "first_response": None,
        "next_response": None,
        "resolution": None,
        "pause_statuses": ["pending"],
        **policy,
        "business_hours": None if hours is None else {"holidays": [], **hours},
        "escalation": steps,
        "desk_id": desk_id,
        "created_at": STAMP,
        "updated_at": STAMP,
        **changes,
    }


async def a_desk(desk: Desk) -> tuple[Tenant, str]:
    acme = await desk.tenant("Acme")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))
    created = await desk.api.post(
        "/v1/support/desks",
        json={"bot_id": bot.id, "connection_id": connection_id},
        headers=acme.admin,
    )
    return acme, str(created.json()["id"])


async def test_create_read_replace_delete(desk: Desk) -> None:
    """PUT creates (201), GET reads, PUT again replaces (200), DELETE removes (then 404)."""
    acme, desk_id = await a_desk(desk)
    path = f"/v1/support/desks/{desk_id}/sla"

    created = await desk.api.put(path, json=POLICY, headers=acme.admin)
    read = await desk.api.get(path, headers=acme.reader)
    desk.clock.advance(60)
    replaced = await desk.api.put(path, json={"resolution": 7200}, headers=acme.admin)
    deleted = await desk.api.delete(path, headers=acme.admin)
    gone = await desk.api.get(path, headers=acme.reader)

    assert (created.status_code, created.json()) == (201, view(desk_id, POLICY))
    assert (read.status_code, read.json()) == (200, view(desk_id, POLICY))
    assert (replaced.status_code, replaced.json()) == (
        200,
        view(desk_id, {"resolution": 7200}, updated_at="2026-01-05T09:01:00Z"),
    )
    assert deleted.status_code == 204
    assert (gone.status_code, gone.json()) == (
        404,
        problem(404, "NotFound", f"desk {desk_id} has no SLA policy"),
    )


async def test_another_workspaces_desk_is_not_found(desk: Desk) -> None:
    """A desk of another workspace is 404 for PUT, GET and DELETE; a reader may not PUT."""
    _acme, desk_id = await a_desk(desk)
    other = await desk.tenant("Other")
    path = f"/v1/support/desks/{desk_id}/sla"

    put = await desk.api.put(path, json=POLICY, headers=other.admin)
    got = await desk.api.get(path, headers=other.reader)
    deleted = await desk.api.delete(path, headers=other.admin)
    by_reader = await desk.api.put(path, json=POLICY, headers=other.reader)

    missing = problem(404, "NotFound", f"no desk {desk_id}")
    assert [(r.status_code, r.json()) for r in (put, got, deleted)] == [(404, missing)] * 3
    assert by_reader.status_code == 403


def hours(weekly: dict[str, Any], timezone: str = "Europe/Berlin") -> dict[str, Any]:
    return {"business_hours": {"timezone": timezone, "weekly": weekly}}


@pytest.mark.parametrize(
    ("body", "loc", "message"),
    [
        (
            hours({"mon": [["09:00", "17:00"]]}, timezone="Mars/Olympus"),
            ["body", "business_hours", "timezone"],
            "Value error, unknown timezone 'Mars/Olympus': use an IANA name such as Europe/Berlin",
        ),
        (
            hours({"mon": [["9am", "17:00"]]}),
            ["body", "business_hours", "weekly"],
            "Value error, mon: '9am' is no time of day (HH:MM, to 24:00)",
        ),
        (
            hours({"tue": [["17:00", "09:00"]]}),
            ["body", "business_hours", "weekly"],
            "Value error, tue: 17:00–09:00 ends before it starts",
        ),
        (
            hours({"wed": [["09:00", "13:00"], ["12:00", "17:00"]]}),
            ["body", "business_hours", "weekly"],
            "Value error, wed: 09:00–13:00 and 12:00–17:00 overlap",
        ),
        (
            hours({"monday": [["09:00", "17:00"]]}),
            ["body", "business_hours", "weekly"],
            "Value error, unknown weekday 'monday': use one of mon, tue, wed, thu, fri, sat, sun",
        ),
        (
            hours({"mon": []}),
            ["body", "business_hours", "weekly"],
            "Value error, business hours need at least one opening range",
        ),
        (
            {"pause_statuses": ["resolved"]},
            ["body", "pause_statuses"],
            "Value error, resolved cannot pause: resolved and closed stop every clock",
        ),
        (
            {"escalation": [{"after_seconds": 0, "warn_before_seconds": 60, "action": "emit"}]},
            ["body", "escalation", 0],
            "Value error, a step needs exactly one of after_seconds or warn_before_seconds",
        ),
        (
            {"escalation": [{"after_seconds": 60, "action": "mention"}]},
            ["body", "escalation", 0],
            "Value error, a mention step needs `users`",
        ),
        (
            {"escalation": [{"after_seconds": 60, "action": "reassign"}]},
            ["body", "escalation", 0],
            "Value error, a reassign step needs `to`",
        ),
    ],
)
async def test_a_wrong_policy_is_refused_naming_the_fault(
    desk: Desk, body: dict[str, Any], loc: list[Any], message: str
) -> None:
    """Each fault is a 422 whose one error points at the field and says what is wrong."""
    acme, desk_id = await a_desk(desk)
    refused = await desk.api.put(f"/v1/support/desks/{desk_id}/sla", json=body, headers=acme.admin)
    assert refused.status_code == 422
    assert [(e["loc"], e["msg"]) for e in refused.json()["errors"]] == [(loc, message)]


async def test_steps_naming_unknown_agents_or_connections_are_refused(desk: Desk) -> None:
    """A reassign to someone who is no agent, a post to no connection: 422 naming the step."""
    acme, desk_id = await a_desk(desk)
    path = f"/v1/support/desks/{desk_id}/sla"
    to_nobody = {"escalation": [{"after_seconds": 0, "action": "reassign", "to": 99}]}
    to_nowhere = {
        "escalation": [
            {"after_seconds": 0, "action": "emit"},
            {"after_seconds": 0, "action": "post_to_connection", "connection_id": "conn_x"},
        ]
    }

    agent = await desk.api.put(path, json=to_nobody, headers=acme.admin)
    connection = await desk.api.put(path, json=to_nowhere, headers=acme.admin)

    assert (agent.status_code, agent.json()) == (
        422,
        problem(
            422,
            "InvalidInput",
            "escalation step 0: no agent 99 (add one with PUT /v1/support/agents/{id})",
        ),
    )
    assert (connection.status_code, connection.json()) == (
        422,
        problem(422, "InvalidInput", "escalation step 1: no group connection conn_x"),
    )
