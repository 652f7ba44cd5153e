"""GET /v1/support/report: the support report of a window, for a desk or the workspace, and
its use case (also read by the UI page)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tgrelay import errors
from tgrelay.runtime import Runtime, runtime
from tgrelay.support import report, report_store, store
from tgrelay.support.models import AutoAnswerOutcome
from tgrelay.support.sla import Metric
from tgrelay.workspaces import service as workspaces

router = APIRouter(prefix="/v1/support", tags=["support"])

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = workspaces.CurrentPrincipal
DEFAULT_WINDOW = timedelta(days=7)
# A report reads every ticket opened in its window: a bound keeps one request's cost bounded.
MAX_WINDOW = timedelta(days=92)


@dataclass(frozen=True, kw_only=True)
class Window:
    start: datetime
    end: datetime


def window(start: datetime | None, end: datetime | None, now: datetime) -> Window:
    """`from`/`to` as given, `to` defaulting to now and `from` to 7 days before `to`;
    InvalidInput for a time without an offset, an empty or an over-long window."""
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.utcoffset() is None:
            raise errors.InvalidInput(f"{name} needs a UTC offset (e.g. 2026-01-05T09:00:00Z)")
    end = end or now
    start = start or end - DEFAULT_WINDOW
    if start >= end:
        raise errors.InvalidInput("from must be before to")
    if end - start > MAX_WINDOW:
        raise errors.InvalidInput(f"the window may span at most {MAX_WINDOW.days} days")
    return Window(start=start, end=end)


async def get_report(
    rt: Runtime, workspace_id: str, desk_id: str | None, span: Window
) -> report.Report:
    """The report of `span` for the desk (all the workspace's desks when None)."""
    async with rt.db.engine.connect() as conn:
        if (
            desk_id is not None
            and await store.desk(conn, desk_id, workspace_id=workspace_id) is None
        ):
            raise errors.NotFound(f"no desk {desk_id}")
        scope = report_store.Scope(
            workspace_id=workspace_id, desk_id=desk_id, start=span.start, end=span.end
        )
        found = await report_store.facts(conn, scope, rt.clock())
    return report.report(found)


class DurationsView(BaseModel):
    count: int
    p50_seconds: float | None
    p90_seconds: float | None

    @classmethod
    def of(cls, d: report.Durations) -> DurationsView:
        return cls(count=d.count, p50_seconds=d.p50, p90_seconds=d.p90)


class AttainmentView(BaseModel):
    met: int
    breached: int
    open: int
    rate: float | None  # met / (met + breached)


class DeflectionView(BaseModel):
    auto_answers: dict[AutoAnswerOutcome, int]
    deflected: int
    rate: float | None  # deflected / tickets opened


class AgentView(BaseModel):
    agent_id: int
    name: str | None
    assigned: int
    first_responses: int
    resolved: int
    first_response_p50_seconds: float | None


class ReportView(BaseModel):
    desk_id: str | None
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    times: str  # how durations are measured
    opened: int
    resolved: int
    first_response: DurationsView
    resolution: DurationsView
    sla: dict[Metric, AttainmentView]
    breaches: dict[Metric, int]
    deflection: DeflectionView
    agents: list[AgentView]

    @classmethod
    def of(cls, desk_id: str | None, span: Window, r: report.Report) -> ReportView:
        return cls(
            desk_id=desk_id,
            from_=span.start,
            to=span.end,
            times="wall_clock",
            opened=r.opened,
            resolved=r.resolved,
            first_response=DurationsView.of(r.first_response),
            resolution=DurationsView.of(r.resolution),
            sla={
                m: AttainmentView(met=a.met, breached=a.breached, open=a.open, rate=a.rate)
                for m, a in r.sla.items()
            },
            breaches=dict(r.breaches),
            deflection=DeflectionView(
                auto_answers=dict(r.deflection.auto_answers),
                deflected=r.deflection.deflected,
                rate=r.deflection.rate,
            ),
            agents=[
                AgentView(
                    agent_id=a.agent_id,
                    name=a.name,
                    assigned=a.assigned,
                    first_responses=a.first_responses,
                    resolved=a.resolved,
                    first_response_p50_seconds=a.first_response_p50,
                )
                for a in r.agents
            ],
        )


@router.get("/report", summary="The support report of a window")
async def get_support_report(
    principal: CurrentPrincipal,
    rt: CurrentRuntime,
    desk_id: str | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> ReportView:
    """Tickets opened in [from, to) give first responses, SLA attainment and deflection;
    resolutions, assignments and breaches count when they happened in the window."""
    span = window(from_, to, rt.clock())
    found = await get_report(rt, principal.workspace_id, desk_id, span)
    return ReportView.of(desk_id, span, found)
