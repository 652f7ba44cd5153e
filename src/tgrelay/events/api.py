"""HTTP routes: the event catalog, endpoints, deliveries, retries and replays."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tgrelay.events import reference, service
from tgrelay.events.models import Attempt, Delivery, DeliveryStatus, Endpoint, EndpointStatus
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces import service as workspaces

router = APIRouter(tags=["events"])

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = workspaces.CurrentPrincipal
AdminPrincipal = workspaces.AdminPrincipal

EventTypes = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)]
# {"message.received": 1}: the schema version an endpoint receives of each type it names.
Versions = Annotated[
    dict[Annotated[str, Field(max_length=64)], Annotated[int, Field(ge=1, le=1000)]],
    Field(max_length=64),
]


class EventVersionView(BaseModel):
    version: int
    change: str  # what this version changed
    schema_: dict[str, Any] = Field(alias="schema")  # JSON schema of the whole body


class EventTypeView(BaseModel):
    type: str
    description: str
    reserved: bool  # documented and subscribable, not emitted yet
    version: int  # the latest version, the one emitted to endpoints that pinned none
    versions: list[EventVersionView]  # oldest first
    schema_: dict[str, Any] = Field(alias="schema")  # JSON schema of the whole body
    example: dict[str, Any]  # a whole body


@router.get("/v1/event-types", summary="The event catalog: every type, its schema and an example")
async def event_types(principal: CurrentPrincipal) -> list[EventTypeView]:
    return [EventTypeView.model_validate(entry) for entry in reference.catalog_json()]


class EndpointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    # Catalog types or families ("group.*"); omitted: every type.
    event_types: EventTypes | None = None
    description: str | None = Field(default=None, max_length=500)
    # Types pinned to an older schema version; omitted: the latest of every type.
    versions: Versions | None = None


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: EventTypes | None = None  # null: every type
    description: str | None = Field(default=None, max_length=500)
    versions: Versions | None = None  # replaces every pin; null or {}: the latest of each


class EndpointView(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str] | None  # null: every type
    versions: dict[str, int]  # pinned schema versions; other types come in their latest
    status: EndpointStatus
    disabled_reason: str | None
    breaker: str  # closed | open | half_open
    consecutive_failures: int
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None  # the old secret signs too until then
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointView:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            event_types=None if endpoint.event_types is None else list(endpoint.event_types),
            versions=dict(endpoint.versions),
            status=endpoint.status,
            disabled_reason=endpoint.disabled_reason,
            breaker=endpoint.breaker.state.value,
            consecutive_failures=endpoint.breaker.consecutive_failures,
            failing_since=endpoint.failing_since,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class EndpointWithSecretView(EndpointView):
    secret: str  # whsec_…: shown once; verify signatures with it


class DeliveryView(BaseModel):
    id: str  # dlv_…
    endpoint_id: str
    event_id: str  # the webhook-id header
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryView:
        return cls(
            id=delivery.public_id,
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            last_status_code=delivery.last_status_code,
            last_error=delivery.last_error,
            created_at=delivery.created_at,
            updated_at=delivery.updated_at,
            delivered_at=delivery.delivered_at,
        )


class AttemptView(BaseModel):
    started_at: datetime
    duration_ms: int
    status_code: int | None
    response_body: str | None  # the first 2 KiB
    error: str | None
    succeeded: bool

    @classmethod
    def of(cls, attempt: Attempt) -> AttemptView:
        return cls.model_validate(attempt, from_attributes=True)


class DeliveryDetailView(DeliveryView):
    attempt_history: list[AttemptView]
    body: str  # the event exactly as the endpoint receives it


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryView]
    next_before: str | None  # pass as `before` for the next (older) page


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime
    until: AwareDatetime | None = None
    status: DeliveryStatus | None = None  # delivered or dead_letter; omitted: both


class ReplayView(BaseModel):
    replayed: int  # deliveries queued again, in their original order


# --- endpoints -------------------------------------------------------------------------


@router.post("/v1/endpoints", status_code=status.HTTP_201_CREATED, summary="Subscribe a URL")
async def create_endpoint(
    body: EndpointRequest, principal: AdminPrincipal, rt: CurrentRuntime
) -> EndpointWithSecretView:
    """The URL is checked (scheme, and where it resolves); the secret is shown only here."""
    created = await service.create_endpoint(
        rt,
        principal,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        versions=body.versions,
    )
    return EndpointWithSecretView(
        **EndpointView.of(created.endpoint).model_dump(), secret=created.secret
    )


@router.get("/v1/endpoints")
async def list_endpoints(principal: CurrentPrincipal, rt: CurrentRuntime) -> list[EndpointView]:
    return [EndpointView.of(e) for e in await service.list_endpoints(rt, principal.workspace_id)]


@router.get("/v1/endpoints/{endpoint_id}")
async def get_endpoint(
    endpoint_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> EndpointView:
    return EndpointView.of(await service.get_endpoint(rt, principal.workspace_id, endpoint_id))


@router.patch("/v1/endpoints/{endpoint_id}")
async def update_endpoint(
    endpoint_id: str, body: EndpointPatch, principal: AdminPrincipal, rt: CurrentRuntime
) -> EndpointView:
    """Change the fields given (an explicit null event_types means every type)."""
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if "url" in given and body.url is not None:
        changes["url"] = body.url
    if "event_types" in given:
        changes["event_types"] = body.event_types
    if "description" in given:
        changes["description"] = body.description
    if "versions" in given:
        changes["versions"] = body.versions
    return EndpointView.of(await service.update_endpoint(rt, principal, endpoint_id, **changes))


@router.delete("/v1/endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_endpoint(
    endpoint_id: str, principal: AdminPrincipal, rt: CurrentRuntime
) -> Response:
    """No more deliveries; pending ones become dead letters. The history stays."""
    await service.delete_endpoint(rt, principal, endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/endpoints/{endpoint_id}/enable")
async def enable_endpoint(
    endpoint_id: str, principal: AdminPrincipal, rt: CurrentRuntime
) -> EndpointView:
    """Receive events again, with a closed breaker; replay dead letters to catch up."""
    return EndpointView.of(await service.update_endpoint(rt, principal, endpoint_id, enabled=True))


@router.post("/v1/endpoints/{endpoint_id}/disable")
async def disable_endpoint(
    endpoint_id: str, principal: AdminPrincipal, rt: CurrentRuntime
) -> EndpointView:
    """Stop deliveries; pending ones become dead letters (replayable after enabling)."""
    return EndpointView.of(await service.update_endpoint(rt, principal, endpoint_id, enabled=False))


@router.post("/v1/endpoints/{endpoint_id}/rotate-secret")
async def rotate_secret(
    endpoint_id: str, principal: AdminPrincipal, rt: CurrentRuntime
) -> EndpointWithSecretView:
    """A new secret, shown once; the old one keeps signing too until the overlap ends."""
    rotated = await service.rotate_secret(rt, principal, endpoint_id)
    return EndpointWithSecretView(
        **EndpointView.of(rotated.endpoint).model_dump(), secret=rotated.secret
    )


# --- deliveries ------------------------------------------------------------------------


@router.get("/v1/endpoints/{endpoint_id}/deliveries")
async def list_deliveries(
    endpoint_id: str,
    principal: CurrentPrincipal,
    rt: CurrentRuntime,
    status: DeliveryStatus | None = None,
    before: Annotated[str | None, Query(max_length=24)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryPage:
    """Newest first; `status=dead_letter` lists what gave up."""
    found = await service.list_deliveries(
        rt, principal.workspace_id, endpoint_id, status=status, before=before, limit=limit
    )
    return DeliveryPage(
        deliveries=[DeliveryView.of(d) for d in found],
        next_before=found[-1].public_id if len(found) == limit else None,
    )


@router.get("/v1/deliveries/{delivery_id}")
async def get_delivery(
    delivery_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> DeliveryDetailView:
    """A delivery with every attempt (status, duration, response excerpt, error)."""
    detail = await service.get_delivery(rt, principal.workspace_id, delivery_id)
    return DeliveryDetailView(
        **DeliveryView.of(detail.delivery).model_dump(),
        attempt_history=[AttemptView.of(a) for a in detail.attempts],
        body=detail.body,
    )


@router.post("/v1/deliveries/{delivery_id}/retry", status_code=status.HTTP_202_ACCEPTED)
async def retry_delivery(
    delivery_id: str, principal: AdminPrincipal, rt: CurrentRuntime
) -> DeliveryView:
    """Send it again now (same webhook-id), on a fresh run of the retry schedule."""
    return DeliveryView.of(await service.retry_delivery(rt, principal, delivery_id))


@router.post("/v1/endpoints/{endpoint_id}/replay", status_code=status.HTTP_202_ACCEPTED)
async def replay(
    endpoint_id: str, body: ReplayRequest, principal: AdminPrincipal, rt: CurrentRuntime
) -> ReplayView:
    """Queue the endpoint's deliveries created in [since, until) again, oldest first."""
    count = await service.replay(
        rt, principal, endpoint_id, since=body.since, until=body.until, status=body.status
    )
    return ReplayView(replayed=count)
