"""/v1/support/agents: PUT creates or replaces, keeping what the relay saw; reads per workspace."""

from __future__ import annotations

from typing import Any

from tgrelay.support import store

from .conftest import STAMP, Desk, problem

BOB_ID = 5559876


def agent_view(**changes: Any) -> dict[str, Any]:
    return {
        "telegram_user_id": BOB_ID,
        "name": "Bob",
        "username": None,
        "external_id": None,
        "capacity": None,
        "active": True,
        "last_assigned_at": None,
        "created_at": STAMP,
        "updated_at": STAMP,
        **changes,
    }


async def test_put_creates_then_replaces(desk: Desk) -> None:
    """The first PUT answers 201, the next 200 with the new settings; GETs show the agent."""
    acme = await desk.tenant("Acme")

    created = await desk.api.put(
        f"/v1/support/agents/{BOB_ID}", json={"name": "Bob", "active": True}, headers=acme.admin
    )
    desk.clock.advance(60)
    replaced = await desk.api.put(
        f"/v1/support/agents/{BOB_ID}",
        json={"name": "Bob B.", "external_id": "E-7", "capacity": 3, "active": False},
        headers=acme.admin,
    )
    one = await desk.api.get(f"/v1/support/agents/{BOB_ID}", headers=acme.reader)
    listed = await desk.api.get("/v1/support/agents", headers=acme.reader)

    after = agent_view(
        name="Bob B.",
        external_id="E-7",
        capacity=3,
        active=False,
        updated_at="2026-01-05T09:01:00Z",
    )
    assert (created.status_code, created.json()) == (201, agent_view())
    assert (replaced.status_code, replaced.json()) == (200, after)
    assert (one.status_code, one.json()) == (200, after)
    assert (listed.status_code, listed.json()) == (200, [after])
    assert await desk.audit(acme.workspace_id) == [
        (
            "agent.created",
            {
                "telegram_user_id": BOB_ID,
                "name": "Bob",
                "external_id": None,
                "capacity": None,
                "active": True,
            },
        ),
        (
            "agent.replaced",
            {
                "telegram_user_id": BOB_ID,
                "name": "Bob B.",
                "external_id": "E-7",
                "capacity": 3,
                "active": False,
            },
        ),
    ]


async def test_put_keeps_what_the_relay_recorded(desk: Desk) -> None:
    """An agent the relay saw in a topic keeps its @username and last_assigned_at on PUT."""
    acme = await desk.tenant("Acme")
    seen_at = desk.clock()
    async with desk.rt.db.transaction() as conn:
        await store.add_agent(
            conn,
            {
                "workspace_id": acme.workspace_id,
                "telegram_user_id": BOB_ID,
                "name": "Bob",
                "username": "bob_ops",
                "active": False,
                "last_assigned_at": seen_at,
                "created_at": seen_at,
                "updated_at": seen_at,
            },
        )

    replaced = await desk.api.put(
        f"/v1/support/agents/{BOB_ID}",
        json={"name": "Bob Ops", "active": True},
        headers=acme.admin,
    )

    assert (replaced.status_code, replaced.json()) == (
        200,
        agent_view(name="Bob Ops", username="bob_ops", last_assigned_at=STAMP),
    )


async def test_refusals(desk: Desk) -> None:
    """Capacity below 1, a missing name or active, a non-positive id are 422; unknown ids
    and other workspaces' agents are 404; a read key cannot PUT."""
    acme = await desk.tenant("Acme")
    rival = await desk.tenant("Rival")
    await desk.api.put(
        f"/v1/support/agents/{BOB_ID}", json={"name": "Bob", "active": True}, headers=acme.admin
    )
    bad_bodies = [
        {"name": "Bob", "active": True, "capacity": 0},
        {"name": "", "active": True},
        {"active": True},
        {"name": "Bob"},
        {"name": "Bob", "active": True, "external_id": ""},
    ]

    bad = [
        await desk.api.put(f"/v1/support/agents/{BOB_ID}", json=body, headers=acme.admin)
        for body in bad_bodies
    ]
    zero = await desk.api.put(
        "/v1/support/agents/0", json={"name": "Bob", "active": True}, headers=acme.admin
    )
    reader = await desk.api.put(
        f"/v1/support/agents/{BOB_ID}", json={"name": "X", "active": True}, headers=acme.reader
    )
    unknown = await desk.api.get("/v1/support/agents/42", headers=acme.admin)
    rival_get = await desk.api.get(f"/v1/support/agents/{BOB_ID}", headers=rival.admin)
    rival_list = await desk.api.get("/v1/support/agents", headers=rival.admin)

    assert [(r.status_code, r.json()["errors"][0]["loc"][-1]) for r in bad] == [
        (422, "capacity"),
        (422, "name"),
        (422, "name"),
        (422, "active"),
        (422, "external_id"),
    ]
    assert (zero.status_code, zero.json()["errors"][0]["loc"]) == (
        422,
        ["path", "telegram_user_id"],
    )
    assert (reader.status_code, reader.json()["title"]) == (403, "Forbidden")
    assert (unknown.status_code, unknown.json()) == (
        404,
        problem(404, "NotFound", "no agent 42"),
    )
    assert rival_get.status_code == 404
    assert rival_list.json() == []
    async with desk.rt.db.engine.connect() as conn:
        kept = await store.agent(conn, acme.workspace_id, BOB_ID)
    assert kept is not None
    assert (kept.name, kept.capacity, kept.active) == ("Bob", None, True)
