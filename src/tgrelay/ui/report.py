"""The web UI's report page: the support report of a window, for a desk or all of them,
with the desk and the window as GET filters (the same figures as GET /v1/support/report)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from starlette.responses import Response

from tgrelay import errors, problems
from tgrelay.support import desks, report_api
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)


@router.get("/ui/report")
async def report_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    params = request.query_params
    desk_id = params.get("desk_id") or None
    found = None
    error = None
    status_code = 200
    try:
        span = report_api.window(_time(params.get("from")), _time(params.get("to")), rt.clock())
        found = await report_api.get_report(rt, principal.workspace_id, desk_id, span)
    except errors.TgrelayError as exc:
        status_code, error = problems.status_of(exc), f"No report: {exc.message}"
        span = None
    return pages.render(
        request,
        "report.html",
        status_code=status_code,
        desks=await desks.list_desks(rt, principal.workspace_id),
        desk_id=desk_id,
        span=span,
        report=found,
        form={"from": params.get("from", ""), "to": params.get("to", "")},
        error=error,
    )


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise errors.InvalidInput(f"{value!r} is no ISO 8601 time") from None
