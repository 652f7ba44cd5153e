"""/v1/support/desks/{desk_id}/sla: a desk's SLA policy, and its use cases (each opens its
own transaction and reads only the principal's workspace). A change re-plans the timers of
the desk's live tickets (sla_replan: the first page at once, the rest in jobs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import errors
from tgrelay.groups import service as groups
from tgrelay.runtime import Runtime, runtime
from tgrelay.support import sla_replan, sla_store, store
from tgrelay.support.sla_policy import Action, PolicySpec
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

router = APIRouter(prefix="/v1/support", tags=["support"])

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = workspaces.CurrentPrincipal
AdminPrincipal = workspaces.AdminPrincipal


class PolicyView(PolicySpec):
    desk_id: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, stored: sla_store.StoredPolicy) -> PolicyView:
        return cls(
            desk_id=stored.desk_id,
            created_at=stored.created_at,
            updated_at=stored.updated_at,
            **stored.spec.model_dump(),
        )


# --- use cases ------------------------------------------------------------------------------


async def put_policy(
    rt: Runtime, principal: Principal, desk_id: str, spec: PolicySpec
) -> tuple[sla_store.StoredPolicy, bool]:
    """Create or replace the desk's policy; (policy, created). InvalidInput names an
    escalation step's agent or connection the workspace does not have."""
    async with rt.db.transaction() as conn:
        await _desk(conn, principal.workspace_id, desk_id)
        await _check_steps(conn, principal.workspace_id, spec)
        created = await sla_store.put_policy(
            conn, principal.workspace_id, desk_id, spec, rt.clock()
        )
        await sla_replan.replan(conn, rt, principal.workspace_id, desk_id)
        stored = await sla_store.policy(conn, desk_id)
    assert stored is not None
    return stored, created


async def get_policy(rt: Runtime, workspace_id: str, desk_id: str) -> sla_store.StoredPolicy:
    async with rt.db.engine.connect() as conn:
        await _desk(conn, workspace_id, desk_id)
        stored = await sla_store.policy(conn, desk_id)
    if stored is None:
        raise errors.NotFound(f"desk {desk_id} has no SLA policy")
    return stored


async def delete_policy(rt: Runtime, principal: Principal, desk_id: str) -> None:
    """The desk's tickets stop having clocks; their recorded breaches stay."""
    async with rt.db.transaction() as conn:
        await _desk(conn, principal.workspace_id, desk_id)
        if not await sla_store.delete_policy(conn, desk_id):
            raise errors.NotFound(f"desk {desk_id} has no SLA policy")
        await sla_replan.replan(conn, rt, principal.workspace_id, desk_id)


async def _desk(conn: AsyncConnection, workspace_id: str, desk_id: str) -> None:
    if await store.desk(conn, desk_id, workspace_id=workspace_id) is None:
        raise errors.NotFound(f"no desk {desk_id}")


async def _check_steps(conn: AsyncConnection, workspace_id: str, spec: PolicySpec) -> None:
    for index, step in enumerate(spec.escalation):
        if (
            step.action is Action.REASSIGN
            and isinstance(step.to, int)
            and await store.agent(conn, workspace_id, step.to) is None
        ):
            raise errors.InvalidInput(
                f"escalation step {index}: no agent {step.to} "
                "(add one with PUT /v1/support/agents/{id})"
            )
        if step.action is Action.POST_TO_CONNECTION:
            assert step.connection_id is not None
            group = await groups.connection_on(conn, step.connection_id)
            if group is None or group.workspace_id != workspace_id:
                raise errors.InvalidInput(
                    f"escalation step {index}: no group connection {step.connection_id}"
                )


# --- routes ---------------------------------------------------------------------------------


@router.put(
    "/desks/{desk_id}/sla",
    responses={201: {"model": PolicyView, "description": "created"}},
    summary="Create or replace a desk's SLA policy",
)
async def put_sla(
    desk_id: str,
    body: PolicySpec,
    principal: AdminPrincipal,
    rt: CurrentRuntime,
    response: Response,
) -> PolicyView:
    """201 when created, 200 when replaced; the desk's open tickets' timers are re-planned."""
    stored, created = await put_policy(rt, principal, desk_id, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return PolicyView.of(stored)


@router.get("/desks/{desk_id}/sla")
async def get_sla(desk_id: str, principal: CurrentPrincipal, rt: CurrentRuntime) -> PolicyView:
    return PolicyView.of(await get_policy(rt, principal.workspace_id, desk_id))


@router.delete("/desks/{desk_id}/sla", status_code=status.HTTP_204_NO_CONTENT)
async def delete_sla(desk_id: str, principal: AdminPrincipal, rt: CurrentRuntime) -> None:
    await delete_policy(rt, principal, desk_id)
