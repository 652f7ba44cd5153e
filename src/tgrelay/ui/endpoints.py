"""The web UI's endpoint pages: subscribe URLs, follow their deliveries, retry and replay them.

A signing secret appears once, in the answer to the POST that made it (never in a URL), and
that answer is not cached. Times on these pages are UTC, the replay form's included.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.models import DeliveryStatus
from tgrelay.runtime import Runtime
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn
from tgrelay.workspaces.models import Principal

router = APIRouter(include_in_schema=False)

DELIVERIES_PER_PAGE = 50
# The API's limits (tgrelay.events.api): a 500-character description, 64 types of 64.
DESCRIPTION_MAX_LENGTH = 500
EVENT_TYPES_MAX_LENGTH = 64 * 65
# The deliveries table's tabs: a status filter and its label; "" lists every delivery.
TABS = [
    ("", "All"),
    (DeliveryStatus.PENDING.value, "Pending"),
    (DeliveryStatus.DELIVERED.value, "Delivered"),
    (DeliveryStatus.DEAD_LETTER.value, "Dead letters"),
]
# What the replay form offers first: the last hour.
REPLAY_DEFAULT_WINDOW = timedelta(hours=1)


def event_type_list(field: str) -> list[str] | None:
    """The add form's comma-separated types; None (every type) when the field is blank."""
    names = [name.strip() for name in field.split(",") if name.strip()]
    return names or None


def form_instant(field: str) -> datetime:
    """A datetime-local field (`2025-01-31T09:00`), read as UTC like every time on the pages."""
    try:
        moment = datetime.fromisoformat(field.strip())
    except ValueError as exc:
        raise errors.InvalidInput(
            f"since must be a date and time like 2025-01-31T09:00, not {field!r}"
        ) from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def form_status(field: str) -> DeliveryStatus | None:
    """The replay form's status choice; None (delivered and dead letters) when blank."""
    if not field:
        return None
    try:
        return DeliveryStatus(field)
    except ValueError as exc:
        raise errors.InvalidInput(f"unknown delivery status {field!r}") from exc


# --- endpoints -----------------------------------------------------------------------------


@router.get("/ui/endpoints")
async def endpoints_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    return await _endpoints(request, rt, principal.workspace_id)


@router.post("/ui/endpoints")
async def add_endpoint(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    url: Annotated[str, Form()] = "",
    event_types: Annotated[str, Form(max_length=EVENT_TYPES_MAX_LENGTH)] = "",
    description: Annotated[str, Form(max_length=DESCRIPTION_MAX_LENGTH)] = "",
) -> Response:
    try:
        created = await events.create_endpoint(
            rt,
            principal,
            url=url.strip(),
            event_types=event_type_list(event_types),
            description=description.strip() or None,
        )
    except errors.InvalidInput as exc:
        form = {"url": url, "event_types": event_types, "description": description}
        return await _endpoints(
            request,
            rt,
            principal.workspace_id,
            status_code=422,
            error=f"No endpoint added: {exc.message}",
            form=form,
        )
    response = await _endpoints(
        request, rt, principal.workspace_id, status_code=201, created=created
    )
    return _uncached(response)


@router.get("/ui/endpoints/{endpoint_id}")
async def endpoint_page(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    endpoint_id: str,
    status: DeliveryStatus | None = None,
    before: str | None = None,
    replayed: int | None = None,
) -> Response:
    notice = None
    if replayed is not None:
        notice = f"Replay: {replayed} {'delivery' if replayed == 1 else 'deliveries'} queued again"
    return await _endpoint(
        request,
        rt,
        principal.workspace_id,
        endpoint_id,
        status=status,
        before=before,
        notice=notice,
    )


@router.post("/ui/endpoints/{endpoint_id}/enable")
async def enable_endpoint(
    request: Request, rt: pages.Rt, principal: SignedIn, endpoint_id: str
) -> Response:
    return await _switch(request, rt, principal, endpoint_id, enabled=True)


@router.post("/ui/endpoints/{endpoint_id}/disable")
async def disable_endpoint(
    request: Request, rt: pages.Rt, principal: SignedIn, endpoint_id: str
) -> Response:
    return await _switch(request, rt, principal, endpoint_id, enabled=False)


@router.post("/ui/endpoints/{endpoint_id}/rotate-secret")
async def rotate_secret(
    request: Request, rt: pages.Rt, principal: SignedIn, endpoint_id: str
) -> Response:
    try:
        rotated = await events.rotate_secret(rt, principal, endpoint_id)
    except errors.NotFound as exc:
        return _not_found(request, exc)
    response = await _endpoint(
        request, rt, principal.workspace_id, endpoint_id, secret=rotated.secret
    )
    return _uncached(response)


@router.post("/ui/endpoints/{endpoint_id}/replay")
async def replay(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    endpoint_id: str,
    since: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "",
) -> Response:
    try:
        count = await events.replay(
            rt,
            principal,
            endpoint_id,
            since=form_instant(since),
            until=None,
            status=form_status(status),
        )
    except errors.NotFound as exc:
        return _not_found(request, exc)
    except (errors.InvalidInput, errors.Conflict) as exc:
        return await _endpoint(
            request,
            rt,
            principal.workspace_id,
            endpoint_id,
            status_code=409 if isinstance(exc, errors.Conflict) else 422,
            error=f"Nothing replayed: {exc.message}",
        )
    return RedirectResponse(f"/ui/endpoints/{endpoint_id}?replayed={count}", status_code=303)


# --- deliveries ----------------------------------------------------------------------------


@router.get("/ui/deliveries/{delivery_id}")
async def delivery_page(
    request: Request, rt: pages.Rt, principal: SignedIn, delivery_id: str
) -> Response:
    return await _delivery(request, rt, principal.workspace_id, delivery_id)


@router.post("/ui/deliveries/{delivery_id}/retry")
async def retry_delivery(
    request: Request, rt: pages.Rt, principal: SignedIn, delivery_id: str
) -> Response:
    """Send a delivery again now; from either page, the browser lands on the delivery."""
    try:
        await events.retry_delivery(rt, principal, delivery_id)
    except errors.NotFound as exc:
        return _not_found(request, exc)
    except errors.Conflict as exc:
        return await _delivery(
            request,
            rt,
            principal.workspace_id,
            delivery_id,
            status_code=409,
            error=f"Not retried: {exc.message}",
        )
    return RedirectResponse(f"/ui/deliveries/{delivery_id}", status_code=303)


# --- rendering -----------------------------------------------------------------------------


async def _endpoints(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    *,
    status_code: int = 200,
    created: events.EndpointWithSecret | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    return pages.render(
        request,
        "endpoints.html",
        status_code=status_code,
        endpoints=await events.list_endpoints(rt, workspace_id),
        created=created,
        catalog=[spec.type.value for spec in catalog.CATALOG if not spec.reserved],
        form=form or {"url": "", "event_types": "", "description": ""},
        error=error,
    )


async def _endpoint(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    endpoint_id: str,
    *,
    status: DeliveryStatus | None = None,
    before: str | None = None,
    status_code: int = 200,
    secret: str | None = None,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    try:
        endpoint = await events.get_endpoint(rt, workspace_id, endpoint_id)
    except errors.NotFound as exc:
        return _not_found(request, exc)
    try:
        deliveries = await events.list_deliveries(
            rt, workspace_id, endpoint_id, status=status, before=before, limit=DELIVERIES_PER_PAGE
        )
    except errors.InvalidInput as exc:  # a `before` that names no delivery
        deliveries, status_code, error = [], 422, exc.message
    filtered = {} if status is None else {"status": status.value}
    older = None
    if len(deliveries) == DELIVERIES_PER_PAGE:
        query = urlencode(filtered | {"before": deliveries[-1].public_id})
        older = f"/ui/endpoints/{endpoint.id}?{query}"
    return pages.render(
        request,
        "endpoints_detail.html",
        status_code=status_code,
        endpoint=endpoint,
        deliveries=deliveries,
        tabs=TABS,
        tab=filtered.get("status", ""),
        older=older,
        since=(rt.clock() - REPLAY_DEFAULT_WINDOW).astimezone(UTC).strftime("%Y-%m-%dT%H:%M"),
        secret=secret,
        notice=notice,
        error=error,
    )


async def _switch(
    request: Request, rt: Runtime, principal: Principal, endpoint_id: str, *, enabled: bool
) -> Response:
    try:
        await events.update_endpoint(rt, principal, endpoint_id, enabled=enabled)
    except errors.NotFound as exc:
        return _not_found(request, exc)
    return RedirectResponse(f"/ui/endpoints/{endpoint_id}", status_code=303)


async def _delivery(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    delivery_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    try:
        detail = await events.get_delivery(rt, workspace_id, delivery_id)
    except errors.NotFound as exc:
        return _not_found(request, exc)
    return pages.render(
        request,
        "delivery.html",
        status_code=status_code,
        delivery=detail.delivery,
        attempts=detail.attempts,
        body=detail.body,
        error=error,
    )


def _not_found(request: Request, exc: errors.NotFound) -> Response:
    return pages.render(request, "not_found.html", status_code=404, error=exc.message)


def _uncached(response: Response) -> Response:
    """The page shows a secret: no cache, nor the browser's back button, may keep a copy."""
    response.headers["Cache-Control"] = "no-store"
    return response
