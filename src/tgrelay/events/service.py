"""Use cases of the events domain: emit events, manage endpoints, inspect and replay deliveries.

`emit` joins the caller's transaction, so an event exists exactly when the change it
describes does. Everything else opens its own transaction.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit, breaker, errors, tracing
from tgrelay.db import engine as db_engine
from tgrelay.events import catalog, store, telemetry
from tgrelay.events.catalog import EventType
from tgrelay.events.models import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointStatus,
    parse_delivery_id,
)
from tgrelay.http import breakers, guard, signing
from tgrelay.queue import store as job_store
from tgrelay.queue.models import NewJob
from tgrelay.runtime import Runtime
from tgrelay.workspaces.models import Principal

log = structlog.get_logger(__name__)

DELIVER_EVENT = "deliver_event"
# Deliveries have their own queue and worker, so slow customer endpoints never hold the
# slots that updates and Telegram sends need.
WEBHOOKS_QUEUE = "webhooks"
REPLAY_BATCH = 500


# --- emitting --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    event_type: EventType
    data: BaseModel
    # The trace of the update it announces; None: the current one (tracing.current_trace_id).
    trace_id: str | None = None


async def emit(
    conn: AsyncConnection,
    rt: Runtime,
    *,
    workspace_id: str,
    event_type: EventType,
    data: BaseModel,
    now: datetime | None = None,
) -> str:
    """Record an event and a delivery (with its job) per subscribed endpoint; the event id."""
    [event_id] = await emit_many(
        conn,
        rt,
        workspace_id=workspace_id,
        events=[NewEvent(event_type=event_type, data=data)],
        now=now,
    )
    return event_id


async def emit_many(
    conn: AsyncConnection,
    rt: Runtime,
    *,
    workspace_id: str,
    events: Sequence[NewEvent],
    now: datetime | None = None,
) -> list[str]:
    """`emit` for several events of one workspace at once: four statements however many."""
    now = now or rt.clock()
    timestamp = now.isoformat().replace("+00:00", "Z")
    subscribers = await store.subscribers(conn, workspace_id)
    rows: list[store.NewEventRow] = []
    wanted: list[store.NewDelivery] = []
    current_trace = tracing.current_trace_id()
    trace_ids: list[str | None] = []  # of each delivery in `wanted`
    for event in events:
        event_id = f"evt_{secrets.token_hex(12)}"
        event_type = event.event_type.value
        latest = catalog.SPECS[event.event_type].version
        trace_id = event.trace_id or current_trace
        body = {
            "id": event_id,
            "type": event_type,
            "version": latest,
            "timestamp": timestamp,
            "workspace_id": workspace_id,
            "data": event.data.model_dump(mode="json", by_alias=True),
        }
        rows.append(
            store.NewEventRow(
                id=event_id, type=event_type, body=orjson.dumps(body).decode(), trace_id=trace_id
            )
        )
        before = len(wanted)
        wanted += [
            store.NewDelivery(
                event_id=event_id,
                event_type=event_type,
                endpoint_id=endpoint.id,
                body=_pinned_body(body, endpoint.versions.get(event_type, latest), latest),
            )
            for endpoint in subscribers
            if catalog.matches(endpoint.event_types, event_type)
        ]
        trace_ids += [trace_id] * (len(wanted) - before)
    await store.insert_events(conn, workspace_id=workspace_id, rows=rows, now=now)
    delivery_ids = await store.insert_deliveries(
        conn, workspace_id=workspace_id, wanted=wanted, now=now
    )
    await enqueue_attempts(conn, rt, delivery_ids, run_at=now, trace_ids=trace_ids)
    telemetry.after_emitting(conn, rt, rows, workspace_id=workspace_id, now=now)
    return [row.id for row in rows]


def _pinned_body(body: dict[str, Any], pinned: int, latest: int) -> str | None:
    """The body an endpoint pinned to an older version receives; None for the latest."""
    return None if pinned == latest else orjson.dumps(catalog.render(body, pinned)).decode()


async def enqueue_attempts(
    conn: AsyncConnection,
    rt: Runtime,
    delivery_ids: Sequence[int],
    *,
    run_at: datetime,
    trace_ids: Sequence[str | None] | None = None,
) -> None:
    """One deliver_event job per delivery, in the caller's transaction; an in-process worker
    is woken once it commits (events written outside jobs, e.g. by the API, too). A job joins
    its event's trace (`trace_ids`, one per delivery; else the current one)."""
    if delivery_ids:
        db_engine.after_commit(conn, functools.partial(rt.notify_queue, WEBHOOKS_QUEUE))
    await job_store.enqueue(
        conn,
        [
            NewJob(
                kind=DELIVER_EVENT,
                queue=WEBHOOKS_QUEUE,
                payload={},
                subject_id=delivery_id,
                run_at=run_at,
                trace_id=trace_id,
            )
            for delivery_id, trace_id in zip(
                delivery_ids, trace_ids or [None] * len(delivery_ids), strict=True
            )
        ],
        now=rt.clock(),
        default_max_attempts=rt.settings.job_max_attempts,
    )


# --- endpoints -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EndpointWithSecret:
    endpoint: Endpoint
    secret: str  # whsec_…, shown once


async def deliveries_expected(rt: Runtime) -> bool:
    """Whether the webhooks queue may get work: an endpoint exists (deliveries follow events;
    conversations' calls are signed by one), or its jobs are waiting already."""
    async with rt.db.engine.connect() as conn:
        return await store.any_endpoint(conn) or await job_store.has_unfinished(
            conn, queue=WEBHOOKS_QUEUE
        )


def target_policy(rt: Runtime) -> guard.TargetPolicy:
    return guard.TargetPolicy(
        allow_private=rt.settings.webhooks_allow_private,
        allowed_networks=rt.settings.webhooks_allowed_networks,
    )


async def _checked_url(rt: Runtime, url: str) -> str:
    """Refuse URLs that could never be delivered to, or that point inside our network."""
    return await guard.check_target(url, target_policy(rt))


def _checked_types(event_types: Sequence[str] | None) -> list[str] | None:
    if event_types is None:
        return None
    unknown = [name for name in event_types if not catalog.is_known_filter(name)]
    if unknown:
        raise errors.InvalidInput(
            f"unknown event types: {', '.join(unknown)} (GET /v1/event-types lists them)"
        )
    if not event_types:
        raise errors.InvalidInput("event_types cannot be empty: omit it to receive every type")
    return list(event_types)


def _checked_versions(versions: Mapping[str, int] | None) -> dict[str, int]:
    """Pins of exact catalog types to versions they have; None or {}: the latest of each."""
    pins = dict(versions or {})
    problems = [
        problem
        for event_type, version in sorted(pins.items())
        if (problem := catalog.version_problem(event_type, version)) is not None
    ]
    if problems:
        raise errors.InvalidInput(
            f"versions: {'; '.join(problems)} (GET /v1/event-types lists them)"
        )
    return pins


async def create_endpoint(
    rt: Runtime,
    principal: Principal,
    *,
    url: str,
    event_types: Sequence[str] | None,
    description: str | None,
    versions: Mapping[str, int] | None = None,
) -> EndpointWithSecret:
    url = await _checked_url(rt, url)
    types = _checked_types(event_types)
    pins = _checked_versions(versions)
    now = rt.clock()
    endpoint_id = f"ep_{secrets.token_hex(8)}"
    secret = signing.generate_secret()
    async with rt.db.transaction() as conn:
        await store.insert_endpoint(
            conn,
            {
                "id": endpoint_id,
                "workspace_id": principal.workspace_id,
                "url": url,
                "description": description,
                "event_types": store.types_value(types),
                "event_versions": store.versions_value(pins),
                "status": EndpointStatus.ENABLED.value,
                "secret_ciphertext": rt.cipher.encrypt(secret),
                **store.breaker_values(breaker.Breaker()),
                "created_at": now,
                "updated_at": now,
            },
        )
        await _audit(conn, principal, "endpoint.created", endpoint_id, now, {"url": url})
        endpoint = await store.get_endpoint(conn, principal.workspace_id, endpoint_id)
    assert endpoint is not None
    log.info("endpoint.created", endpoint_id=endpoint_id, workspace_id=principal.workspace_id)
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


async def list_endpoints(rt: Runtime, workspace_id: str) -> list[Endpoint]:
    async with rt.db.engine.connect() as conn:
        return await store.list_endpoints(conn, workspace_id)


async def get_endpoint(rt: Runtime, workspace_id: str, endpoint_id: str) -> Endpoint:
    async with rt.db.engine.connect() as conn:
        return _found(await store.get_endpoint(conn, workspace_id, endpoint_id), endpoint_id)


_UNSET: Any = object()


async def update_endpoint(
    rt: Runtime,
    principal: Principal,
    endpoint_id: str,
    *,
    url: str | None = None,
    event_types: Sequence[str] | None = _UNSET,
    description: str | None = _UNSET,
    enabled: bool | None = None,
    versions: Mapping[str, int] | None = _UNSET,
) -> Endpoint:
    """Change what was given; enabling closes the breaker and forgets the failures.

    `versions` replaces every pin (None or {}: the latest of each type); deliveries already
    made keep the version they were rendered in, replays included.
    """
    now = rt.clock()
    values: dict[str, Any] = {}
    if url is not None:
        values["url"] = await _checked_url(rt, url)
    if event_types is not _UNSET:
        values["event_types"] = store.types_value(_checked_types(event_types))
    if versions is not _UNSET:
        values["event_versions"] = store.versions_value(_checked_versions(versions))
    if description is not _UNSET:
        values["description"] = description
    async with rt.db.transaction() as conn:
        current = _found(
            await store.get_endpoint(conn, principal.workspace_id, endpoint_id, for_update=True),
            endpoint_id,
        )
        if enabled is True and current.status is EndpointStatus.DISABLED:
            values |= {
                "status": EndpointStatus.ENABLED.value,
                "disabled_reason": None,
                "failing_since": None,
                **store.breaker_values(breaker.Breaker()),
            }
        elif enabled is False and current.status is EndpointStatus.ENABLED:
            await _disable(conn, rt, current, reason=f"disabled by {principal.actor}", now=now)
        if values:
            await store.update_endpoint(conn, endpoint_id, values | {"updated_at": now})
        await _audit(
            conn,
            principal,
            "endpoint.updated",
            endpoint_id,
            now,
            {"fields": sorted(values), "enabled": enabled},
        )
        updated = await store.get_endpoint(conn, principal.workspace_id, endpoint_id)
    assert updated is not None
    return updated


async def delete_endpoint(rt: Runtime, principal: Principal, endpoint_id: str) -> None:
    """Stop delivering to an endpoint; its pending deliveries become dead letters."""
    now = rt.clock()
    async with rt.db.transaction() as conn:
        _found(await store.get_endpoint(conn, principal.workspace_id, endpoint_id), endpoint_id)
        await store.update_endpoint(conn, endpoint_id, {"deleted_at": now, "updated_at": now})
        dropped = await store.dead_letter_pending(
            conn, endpoint_id, reason="endpoint deleted", now=now
        )
        telemetry.dead_lettered(conn, rt, dropped)
        await _audit(conn, principal, "endpoint.deleted", endpoint_id, now, {})


async def rotate_secret(rt: Runtime, principal: Principal, endpoint_id: str) -> EndpointWithSecret:
    """A new signing secret; the previous one keeps signing too for the overlap period, and
    so does every earlier one still within its own overlap."""
    now = rt.clock()
    secret = signing.generate_secret()
    overlap = timedelta(seconds=rt.settings.webhooks_secret_overlap_seconds)
    async with rt.db.transaction() as conn:
        _found(
            await store.get_endpoint(conn, principal.workspace_id, endpoint_id, for_update=True),
            endpoint_id,
        )
        current = await store.secret_ciphertexts(conn, endpoint_id)
        earlier = still_overlapping(current, now=now)
        await store.update_endpoint(
            conn,
            endpoint_id,
            {
                "secret_ciphertext": rt.cipher.encrypt(secret),
                "previous_secret_ciphertext": current.current if overlap else None,
                "previous_secret_expires_at": now + overlap if overlap else None,
                "earlier_secrets": store.earlier_secrets_value(earlier),
                "updated_at": now,
            },
        )
        await _audit(conn, principal, "endpoint.secret_rotated", endpoint_id, now, {})
        endpoint = await store.get_endpoint(conn, principal.workspace_id, endpoint_id)
    assert endpoint is not None
    return EndpointWithSecret(endpoint=endpoint, secret=secret)


def still_overlapping(
    stored: store.SecretCiphertexts, *, now: datetime
) -> list[tuple[str, datetime]]:
    """The rotated-out secrets (ciphertext, overlap end) still signing at `now`, newest first."""
    rotated = [(stored.previous, stored.previous_expires_at), *stored.earlier]
    return [
        (ciphertext, expires_at)
        for ciphertext, expires_at in rotated
        if ciphertext is not None and expires_at is not None and now < expires_at
    ]


def signing_secrets(rt: Runtime, stored: store.SecretCiphertexts, *, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and each rotated-out one during its overlap."""
    return [
        rt.cipher.decrypt(ciphertext)
        for ciphertext in [stored.current, *(c for c, _ in still_overlapping(stored, now=now))]
    ]


async def disable_endpoint(
    conn: AsyncConnection, rt: Runtime, endpoint: Endpoint, *, reason: str, now: datetime
) -> None:
    """Disable an endpoint in the caller's transaction (a 410, or days of failures)."""
    await _disable(conn, rt, endpoint, reason=reason, now=now)
    await audit.record(
        conn,
        action="endpoint.disabled",
        actor=audit.SYSTEM,
        now=now,
        workspace_id=endpoint.workspace_id,
        detail={"endpoint_id": endpoint.id, "reason": reason},
    )


async def _disable(
    conn: AsyncConnection, rt: Runtime, endpoint: Endpoint, *, reason: str, now: datetime
) -> None:
    await store.update_endpoint(
        conn,
        endpoint.id,
        {"status": EndpointStatus.DISABLED.value, "disabled_reason": reason, "updated_at": now},
    )
    dropped = await store.dead_letter_pending(
        conn, endpoint.id, reason=f"endpoint disabled: {reason}", now=now
    )
    telemetry.dead_lettered(conn, rt, dropped)
    await emit(
        conn,
        rt,
        workspace_id=endpoint.workspace_id,
        event_type=EventType.ENDPOINT_DISABLED,
        data=catalog.EndpointDisabledData(endpoint_id=endpoint.id, url=endpoint.url, reason=reason),
        now=now,
    )
    log.warning("endpoint.disabled", endpoint_id=endpoint.id, reason=reason, dead_lettered=dropped)


# --- deliveries ------------------------------------------------------------------------


async def list_deliveries(
    rt: Runtime,
    workspace_id: str,
    endpoint_id: str,
    *,
    status: DeliveryStatus | None,
    before: str | None,
    limit: int,
) -> list[Delivery]:
    before_id = None if before is None else parse_delivery_id(before)
    if before is not None and before_id is None:
        raise errors.InvalidInput(f"before must be a delivery id like dlv_42, not {before!r}")
    async with rt.db.engine.connect() as conn:
        _found(await store.get_endpoint(conn, workspace_id, endpoint_id), endpoint_id)
        return await store.list_deliveries(
            conn, endpoint_id=endpoint_id, status=status, before_id=before_id, limit=limit
        )


@dataclass(frozen=True, kw_only=True)
class DeliveryDetail:
    delivery: Delivery
    attempts: list[Attempt]
    body: str  # the event as the endpoint receives it


async def get_delivery(rt: Runtime, workspace_id: str, delivery_id: str) -> DeliveryDetail:
    async with rt.db.engine.connect() as conn:
        delivery = await _delivery(conn, workspace_id, delivery_id)
        found = await store.target(conn, delivery.id)
        assert found is not None
        return DeliveryDetail(
            delivery=delivery, attempts=await store.attempts_of(conn, delivery.id), body=found.body
        )


async def retry_delivery(rt: Runtime, principal: Principal, delivery_id: str) -> Delivery:
    """Send a delivery again now, on a fresh run of the schedule (a dead letter, say)."""
    now = rt.clock()
    async with rt.db.transaction() as conn:
        delivery = await _delivery(conn, principal.workspace_id, delivery_id)
        endpoint = await _enabled_endpoint(conn, principal.workspace_id, delivery.endpoint_id)
        if delivery.status is DeliveryStatus.PENDING:
            raise errors.Conflict(f"{delivery_id} is already pending; its next attempt is queued")
        await store.restart(conn, [delivery.id], now=now)
        await enqueue_attempts(conn, rt, [delivery.id], run_at=now)
        await _audit(
            conn, principal, "delivery.retried", endpoint.id, now, {"delivery_id": delivery_id}
        )
        updated = await store.get_delivery(conn, principal.workspace_id, delivery.id)
    assert updated is not None
    rt.notify_queue(WEBHOOKS_QUEUE)
    return updated


async def replay(
    rt: Runtime,
    principal: Principal,
    endpoint_id: str,
    *,
    since: datetime,
    until: datetime | None,
    status: DeliveryStatus | None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> int:
    """Re-send an endpoint's deliveries created in [since, until), oldest first; how many.

    `status` narrows it (dead_letter: what failed; delivered: a receiver lost its data);
    pending deliveries are never replayed, their attempt is already queued.
    """
    if status is DeliveryStatus.PENDING:
        raise errors.InvalidInput("pending deliveries are already queued; replay the others")
    if until is not None and until <= since:
        raise errors.InvalidInput("until must be after since")
    statuses = (
        [status] if status is not None else [DeliveryStatus.DELIVERED, DeliveryStatus.DEAD_LETTER]
    )
    async with rt.db.engine.connect() as conn:
        await _enabled_endpoint(conn, principal.workspace_id, endpoint_id)
        total = await store.count_replayable(
            conn, endpoint_id=endpoint_id, since=since, until=until, statuses=statuses
        )
    done, after_id = 0, 0
    progress(done, total)
    while True:
        # One batch per transaction: a huge replay neither holds SQLite's lock for long nor
        # needs to fit in one transaction; ids keep the original order across batches.
        async with rt.db.transaction() as conn:
            ids = await store.replayable(
                conn,
                endpoint_id=endpoint_id,
                since=since,
                until=until,
                statuses=statuses,
                after_id=after_id,
                limit=REPLAY_BATCH,
            )
            if not ids:
                break
            now = rt.clock()
            await store.restart(conn, ids, now=now)
            await enqueue_attempts(conn, rt, ids, run_at=now)
        rt.notify_queue(WEBHOOKS_QUEUE)
        after_id = ids[-1]
        done += len(ids)
        progress(done, max(total, done))
    async with rt.db.transaction() as conn:
        await _audit(
            conn,
            principal,
            "endpoint.replayed",
            endpoint_id,
            rt.clock(),
            {"since": since, "until": until, "status": status, "count": done},
        )
    return done


# --- helpers of this module ------------------------------------------------------------


def _found(endpoint: Endpoint | None, endpoint_id: str) -> Endpoint:
    if endpoint is None:
        raise errors.NotFound(f"no endpoint {endpoint_id}")
    return endpoint


async def _enabled_endpoint(conn: AsyncConnection, workspace_id: str, endpoint_id: str) -> Endpoint:
    endpoint = _found(await store.get_endpoint(conn, workspace_id, endpoint_id), endpoint_id)
    if endpoint.status is EndpointStatus.DISABLED:
        raise errors.Conflict(
            f"endpoint {endpoint_id} is disabled ({endpoint.disabled_reason}); enable it first"
        )
    return endpoint


async def _delivery(conn: AsyncConnection, workspace_id: str, delivery_id: str) -> Delivery:
    numeric = parse_delivery_id(delivery_id)
    delivery = None if numeric is None else await store.get_delivery(conn, workspace_id, numeric)
    if delivery is None:
        raise errors.NotFound(f"no delivery {delivery_id}")
    return delivery


async def _audit(
    conn: AsyncConnection,
    principal: Principal,
    action: str,
    endpoint_id: str,
    now: datetime,
    detail: dict[str, Any],
) -> None:
    await audit.record(
        conn,
        action=action,
        actor=principal.actor,
        now=now,
        workspace_id=principal.workspace_id,
        detail={"endpoint_id": endpoint_id, **detail},
    )


# --- the secret that signs a conversation's call (issue 21) -------------------------------


async def call_secret(
    conn: AsyncConnection, rt: Runtime, workspace_id: str, url: str
) -> str | None:
    """The current secret of the workspace's enabled endpoint whose URL has the same origin
    (scheme://host:port) as `url`, which signs a conversation's call to it; None when no
    endpoint has that origin. Oldest endpoint first when several share it."""
    wanted = breakers.origin(url)
    for endpoint in await store.list_endpoints(conn, workspace_id):
        if endpoint.status is EndpointStatus.ENABLED and breakers.origin(endpoint.url) == wanted:
            return rt.cipher.decrypt((await store.secret_ciphertexts(conn, endpoint.id)).current)
    return None
