"""Agents' use cases: naming the people who answer, and who takes round-robin tickets.

The relay records agents it sees write in a ticket's topic (inactive, with their
@username); PUT names them and sets their capacity without losing what the relay saw.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from tgrelay import audit, errors
from tgrelay.runtime import Runtime
from tgrelay.support import store
from tgrelay.support.models import Agent
from tgrelay.workspaces.models import Principal

MAX_NAME_LENGTH = 200
MAX_EXTERNAL_ID_LENGTH = 200


async def put_agent(
    rt: Runtime,
    principal: Principal,
    telegram_user_id: int,
    *,
    name: str,
    external_id: str | None,
    capacity: int | None,
    active: bool,
) -> tuple[Agent, bool]:
    """Create or replace an agent's settings; (the agent, created). `username` and
    `last_assigned_at` are the relay's and stay."""
    check(telegram_user_id, name=name, external_id=external_id, capacity=capacity)
    workspace_id = principal.workspace_id
    settings: dict[str, object] = {
        "name": name,
        "external_id": external_id,
        "capacity": capacity,
        "active": active,
    }
    try:
        created = await _put(rt, principal, telegram_user_id, settings)
    except IntegrityError:
        # The relay recorded the agent between our read and insert: replace that row.
        created = await _put(rt, principal, telegram_user_id, settings)
    async with rt.db.engine.connect() as conn:
        agent = await store.agent(conn, workspace_id, telegram_user_id)
    assert agent is not None  # just written
    return agent, created


async def _put(
    rt: Runtime, principal: Principal, telegram_user_id: int, settings: dict[str, object]
) -> bool:
    workspace_id = principal.workspace_id
    now = rt.clock()
    async with rt.db.transaction() as conn:
        existing = await store.agent(conn, workspace_id, telegram_user_id)
        if existing is None:
            await store.add_agent(
                conn,
                {
                    "workspace_id": workspace_id,
                    "telegram_user_id": telegram_user_id,
                    **settings,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        else:
            await store.change_agent(
                conn, workspace_id, telegram_user_id, **settings, updated_at=now
            )
        await audit.record(
            conn,
            action="agent.created" if existing is None else "agent.replaced",
            actor=principal.actor,
            now=now,
            workspace_id=workspace_id,
            detail={"telegram_user_id": telegram_user_id, **settings},
        )
    return existing is None


async def list_agents(rt: Runtime, workspace_id: str) -> list[Agent]:
    async with rt.db.engine.connect() as conn:
        return await store.list_agents(conn, workspace_id)


async def get_agent(rt: Runtime, workspace_id: str, telegram_user_id: int) -> Agent:
    async with rt.db.engine.connect() as conn:
        found = await store.agent(conn, workspace_id, telegram_user_id)
    if found is None:
        raise errors.NotFound(f"no agent {telegram_user_id}")
    return found


def check(
    telegram_user_id: int, *, name: str, external_id: str | None, capacity: int | None
) -> None:
    """Raise InvalidInput for settings out of bounds (the API's schema says the same)."""
    if telegram_user_id <= 0:
        raise errors.InvalidInput("a Telegram user id is a positive number")
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise errors.InvalidInput(f"name must be 1 to {MAX_NAME_LENGTH} characters")
    if external_id is not None and not 1 <= len(external_id) <= MAX_EXTERNAL_ID_LENGTH:
        raise errors.InvalidInput(
            f"external_id must be 1 to {MAX_EXTERNAL_ID_LENGTH} characters, or null"
        )
    if capacity is not None and capacity < 1:
        raise errors.InvalidInput("capacity must be at least 1, or null for no limit")
