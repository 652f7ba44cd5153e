"""The events domain's SQL: events, endpoints, deliveries and attempts.

Every function joins the caller's transaction; reads that serve a workspace filter by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import breaker
from tgrelay.db import ids, prepared, tables
from tgrelay.db.bulk_inserts import BulkInsert
from tgrelay.events.models import Attempt, Delivery, DeliveryStatus, Endpoint, EndpointStatus

events = tables.events
endpoints = tables.endpoints
deliveries = tables.deliveries
attempts = tables.delivery_attempts

MAX_ERROR_LENGTH = 2000


# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NewEventRow:
    id: str
    type: str
    body: str  # the JSON every attempt sends, byte for byte (unless a pinned version's)
    trace_id: str | None = None  # the trace of the update it announces, if one did


async def insert_events(
    conn: AsyncConnection, *, workspace_id: str, rows: Sequence[NewEventRow], now: datetime
) -> None:
    if rows:
        await _INSERT_EVENTS(
            conn,
            [
                {
                    "id": row.id,
                    "workspace_id": workspace_id,
                    "type": row.type,
                    "body": row.body,
                    "created_at": now,
                    "trace_id": row.trace_id,
                }
                for row in rows
            ],
        )


_INSERT_EVENTS = BulkInsert(
    events, ("id", "workspace_id", "type", "body", "created_at", "trace_id")
)


# --- endpoints -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Subscriber:
    id: str
    event_types: tuple[str, ...] | None
    versions: dict[str, int]  # pinned schema versions by type


async def subscribers(conn: AsyncConnection, workspace_id: str) -> list[Subscriber]:
    """The workspace's enabled endpoints with what each subscribed to."""
    rows = await _SUBSCRIBERS(conn, {"subscriber_workspace": workspace_id})
    return [
        Subscriber(
            id=row.id,
            event_types=_types_of(row.event_types),
            versions=versions_of(row.event_versions),
        )
        for row in rows
    ]


_SUBSCRIBERS = prepared.Prepared(
    select(endpoints.c.id, endpoints.c.event_types, endpoints.c.event_versions).where(
        endpoints.c.workspace_id == bindparam("subscriber_workspace"),
        endpoints.c.status == EndpointStatus.ENABLED.value,
        endpoints.c.deleted_at.is_(None),
    )
)


async def insert_endpoint(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(endpoints).values(**values))


async def any_endpoint(conn: AsyncConnection) -> bool:
    """Whether any workspace has an endpoint (enabled or not; deleted ones do not count)."""
    found = await conn.scalar(
        select(endpoints.c.id).where(endpoints.c.deleted_at.is_(None)).limit(1)
    )
    return found is not None


async def get_endpoint(
    conn: AsyncConnection, workspace_id: str, endpoint_id: str, *, for_update: bool = False
) -> Endpoint | None:
    statement = select(endpoints).where(
        endpoints.c.id == endpoint_id,
        endpoints.c.workspace_id == workspace_id,
        endpoints.c.deleted_at.is_(None),
    )
    if for_update and conn.dialect.name == "postgresql":
        statement = statement.with_for_update()
    row = (await conn.execute(statement)).one_or_none()
    return None if row is None else endpoint_of(row)


async def list_endpoints(conn: AsyncConnection, workspace_id: str) -> list[Endpoint]:
    rows = await conn.execute(
        select(endpoints)
        .where(endpoints.c.workspace_id == workspace_id, endpoints.c.deleted_at.is_(None))
        .order_by(endpoints.c.created_at, endpoints.c.id)
    )
    return [endpoint_of(row) for row in rows]


async def update_endpoint(
    conn: AsyncConnection, endpoint_id: str, values: Mapping[str, Any]
) -> None:
    await conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(**values))


async def close_breakers(conn: AsyncConnection, endpoint_ids: Sequence[str]) -> None:
    """After successes: closed breakers and no failure streaks, written only where not already.

    No read and no row lock: on the hot path of every delivered attempt, a healthy endpoint's
    row is not written at all.
    """
    if endpoint_ids:
        await _CLOSE_BREAKERS(conn, {"endpoint_ids": sorted(set(endpoint_ids))})


@dataclass(frozen=True, kw_only=True)
class SecretCiphertexts:
    current: str
    previous: str | None
    previous_expires_at: datetime | None
    # Secrets rotated out before the previous one, with the end of each one's overlap.
    earlier: tuple[tuple[str, datetime], ...] = ()


async def secret_ciphertexts(conn: AsyncConnection, endpoint_id: str) -> SecretCiphertexts:
    row = (
        await conn.execute(
            select(
                endpoints.c.secret_ciphertext,
                endpoints.c.previous_secret_ciphertext,
                endpoints.c.previous_secret_expires_at,
                endpoints.c.earlier_secrets,
            ).where(endpoints.c.id == endpoint_id)
        )
    ).one()
    return _secrets_from(dict(row._mapping))


def _secrets_from(columns: Mapping[str, Any]) -> SecretCiphertexts:
    return SecretCiphertexts(
        current=columns["secret_ciphertext"],
        previous=columns["previous_secret_ciphertext"],
        previous_expires_at=columns["previous_secret_expires_at"],
        earlier=earlier_of(columns["earlier_secrets"]),
    )


def earlier_of(stored: str | None) -> tuple[tuple[str, datetime], ...]:
    """The (ciphertext, overlap end) pairs an earlier_secrets column holds."""
    if stored is None:
        return ()
    return tuple(
        (ciphertext, datetime.fromisoformat(expires_at))
        for ciphertext, expires_at in orjson.loads(stored)
    )


def earlier_secrets_value(earlier: Sequence[tuple[str, datetime]]) -> str | None:
    """The earlier_secrets column holding these (ciphertext, overlap end) pairs."""
    if not earlier:
        return None
    return orjson.dumps([[ciphertext, at.isoformat()] for ciphertext, at in earlier]).decode()


def breaker_values(state: breaker.Breaker) -> dict[str, Any]:
    """The endpoints columns that hold a breaker."""
    return {
        "breaker_state": state.state.value,
        "consecutive_failures": state.consecutive_failures,
        "breaker_opened_at": state.opened_at,
        "breaker_retry_at": state.retry_at,
        "breaker_open_count": state.open_count,
    }


# Statements of the delivery hot path are built once: hashing a fresh statement for
# SQLAlchemy's compiled cache cost about as much as SQLite took to run it. Prepared: on
# SQLite they run in place under the write lock (db/prepared.py).
_CLOSED = breaker.Breaker()
_CLOSE_BREAKERS = prepared.Prepared(
    update(endpoints)
    .where(
        endpoints.c.id.in_(bindparam("endpoint_ids", expanding=True)),
        or_(
            endpoints.c.breaker_state != _CLOSED.state.value,
            endpoints.c.consecutive_failures != 0,
            endpoints.c.breaker_open_count != 0,
            endpoints.c.failing_since.is_not(None),
        ),
    )
    .values(**breaker_values(_CLOSED), failing_since=None)
)


def endpoint_of(row: Row[Any]) -> Endpoint:
    return _endpoint_from(dict(row._mapping))


def _endpoint_from(columns: Mapping[str, Any]) -> Endpoint:
    return Endpoint(
        id=columns["id"],
        workspace_id=columns["workspace_id"],
        url=columns["url"],
        description=columns["description"],
        event_types=_types_of(columns["event_types"]),
        versions=versions_of(columns["event_versions"]),
        status=EndpointStatus(columns["status"]),
        disabled_reason=columns["disabled_reason"],
        breaker=breaker.Breaker(
            state=breaker.BreakerState(columns["breaker_state"]),
            consecutive_failures=columns["consecutive_failures"],
            opened_at=columns["breaker_opened_at"],
            retry_at=columns["breaker_retry_at"],
            open_count=columns["breaker_open_count"],
        ),
        failing_since=columns["failing_since"],
        previous_secret_expires_at=columns["previous_secret_expires_at"],
        created_at=columns["created_at"],
        updated_at=columns["updated_at"],
    )


def _types_of(stored: str | None) -> tuple[str, ...] | None:
    return None if stored is None else tuple(orjson.loads(stored))


def types_value(event_types: Sequence[str] | None) -> str | None:
    return None if event_types is None else orjson.dumps(sorted(set(event_types))).decode()


def versions_of(stored: str | None) -> dict[str, int]:
    return {} if stored is None else dict(orjson.loads(stored))


def versions_value(versions: Mapping[str, int]) -> str | None:
    """The event_versions column pinning these versions (null when none is pinned)."""
    return orjson.dumps(dict(sorted(versions.items()))).decode() if versions else None


# --- deliveries ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NewDelivery:
    event_id: str
    event_type: str
    endpoint_id: str
    body: str | None = None  # the body rendered in a pinned older version; None: the event's


async def insert_deliveries(
    conn: AsyncConnection, *, workspace_id: str, wanted: Sequence[NewDelivery], now: datetime
) -> list[int]:
    """One pending delivery per item of `wanted`; ids in its order."""
    if not wanted:
        return []
    delivery_ids = await ids.new_ids(conn, deliveries, len(wanted))
    rows = [
        {
            "id": delivery_id,
            "workspace_id": workspace_id,
            "endpoint_id": delivery.endpoint_id,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "schedule_attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
            "body": delivery.body,
        }
        for delivery_id, delivery in zip(delivery_ids, wanted, strict=True)
    ]
    await _INSERT_DELIVERIES(conn, rows)
    return delivery_ids


_INSERT_DELIVERIES = BulkInsert(
    deliveries,
    (
        "id",
        "workspace_id",
        "endpoint_id",
        "event_id",
        "event_type",
        "status",
        "attempts",
        "schedule_attempts",
        "next_attempt_at",
        "created_at",
        "updated_at",
        "body",
    ),
)


async def get_delivery(
    conn: AsyncConnection, workspace_id: str, delivery_id: int
) -> Delivery | None:
    row = (
        await conn.execute(
            select(deliveries).where(
                deliveries.c.id == delivery_id, deliveries.c.workspace_id == workspace_id
            )
        )
    ).one_or_none()
    return None if row is None else delivery_of(row)


async def list_deliveries(
    conn: AsyncConnection,
    *,
    endpoint_id: str,
    status: DeliveryStatus | None,
    before_id: int | None,
    limit: int,
) -> list[Delivery]:
    """Newest first, `limit` at a time; `before_id` continues where a page ended."""
    statement = select(deliveries).where(deliveries.c.endpoint_id == endpoint_id)
    if status is not None:
        statement = statement.where(deliveries.c.status == status.value)
    if before_id is not None:
        statement = statement.where(deliveries.c.id < before_id)
    rows = await conn.execute(statement.order_by(deliveries.c.id.desc()).limit(limit))
    return [delivery_of(row) for row in rows]


async def replayable(
    conn: AsyncConnection,
    *,
    endpoint_id: str,
    since: datetime,
    until: datetime | None,
    statuses: Sequence[DeliveryStatus],
    after_id: int,
    limit: int,
) -> list[int]:
    """Ids of the endpoint's deliveries created in [since, until), oldest first."""
    statement = select(deliveries.c.id).where(
        deliveries.c.endpoint_id == endpoint_id,
        deliveries.c.created_at >= since,
        deliveries.c.status.in_([status.value for status in statuses]),
        deliveries.c.id > after_id,
    )
    if until is not None:
        statement = statement.where(deliveries.c.created_at < until)
    rows = await conn.execute(statement.order_by(deliveries.c.id).limit(limit))
    return [int(row.id) for row in rows]


async def count_replayable(
    conn: AsyncConnection,
    *,
    endpoint_id: str,
    since: datetime,
    until: datetime | None,
    statuses: Sequence[DeliveryStatus],
) -> int:
    statement = (
        select(func.count())
        .select_from(deliveries)
        .where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.created_at >= since,
            deliveries.c.status.in_([status.value for status in statuses]),
        )
    )
    if until is not None:
        statement = statement.where(deliveries.c.created_at < until)
    return int(await conn.scalar(statement) or 0)


async def restart(conn: AsyncConnection, delivery_ids: Sequence[int], *, now: datetime) -> None:
    """Put deliveries back to pending at the start of a new run of the schedule."""
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_(delivery_ids))
        .values(
            status=DeliveryStatus.PENDING.value,
            schedule_attempts=0,
            next_attempt_at=now,
            updated_at=now,
        )
    )


async def dead_letter_pending(
    conn: AsyncConnection, endpoint_id: str, *, reason: str, now: datetime
) -> int:
    """Give up on every pending delivery of an endpoint (it was disabled or deleted)."""
    result = await conn.execute(
        update(deliveries)
        .where(
            deliveries.c.endpoint_id == endpoint_id,
            deliveries.c.status == DeliveryStatus.PENDING.value,
        )
        .values(
            status=DeliveryStatus.DEAD_LETTER.value,
            next_attempt_at=None,
            last_error=reason,
            updated_at=now,
        )
    )
    return int(result.rowcount)


@dataclass(frozen=True, kw_only=True)
class Target:
    """What one attempt needs: the delivery, its event's body, its endpoint and secrets."""

    delivery: Delivery
    body: str  # what the endpoint receives: the event's body, or its pinned version's
    endpoint: Endpoint
    endpoint_deleted: bool
    secrets: SecretCiphertexts  # read with the rest: no second round trip per attempt
    trace_id: str | None = None  # its event's: sent as `traceparent`


async def targets(conn: AsyncConnection, delivery_ids: Sequence[int]) -> dict[int, Target]:
    """The targets of many attempts in one query, by delivery id (missing ids are absent)."""
    if not delivery_ids:
        return {}
    rows = await conn.execute(_TARGETS, {"delivery_ids": list(delivery_ids)})
    found = {}
    # A claim's attempts mostly go to a few endpoints: each endpoint's row is made into its
    # objects once (they are immutable), not once per attempt.
    endpoints_seen: dict[tuple[Any, ...], tuple[Endpoint, bool, SecretCiphertexts]] = {}
    for row in rows:
        endpoint_values = tuple(row[_ENDPOINT_AT:])
        endpoint_seen = endpoints_seen.get(endpoint_values)
        if endpoint_seen is None:
            endpoint_columns = dict(zip(_ENDPOINT_NAMES, endpoint_values, strict=True))
            endpoint_seen = endpoints_seen[endpoint_values] = (
                _endpoint_from(endpoint_columns),
                endpoint_columns["deleted_at"] is not None,
                _secrets_from(endpoint_columns),
            )
        endpoint, endpoint_deleted, secrets = endpoint_seen
        delivery_columns = dict(zip(_DELIVERY_NAMES, row[:_EVENT_BODY_AT], strict=True))
        delivery = _delivery_from(delivery_columns)
        event_body, trace_id = row[_EVENT_BODY_AT:_ENDPOINT_AT]
        found[delivery.id] = Target(
            delivery=delivery,
            body=delivery_columns["body"] or event_body,
            endpoint=endpoint,
            endpoint_deleted=endpoint_deleted,
            secrets=secrets,
            trace_id=trace_id,
        )
    return found


_TARGETS = (
    select(deliveries, events.c.body, events.c.trace_id, endpoints)
    .join(events, events.c.id == deliveries.c.event_id)
    .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
    .where(deliveries.c.id.in_(bindparam("delivery_ids", expanding=True)))
)
# _TARGETS' row by position (names of a joined select's columns repeat): the delivery's
# columns, its event's body and trace_id, the endpoint's columns.
_DELIVERY_NAMES = tuple(column.name for column in deliveries.c)
_EVENT_BODY_AT = len(_DELIVERY_NAMES)
_ENDPOINT_AT = _EVENT_BODY_AT + 2
_ENDPOINT_NAMES = tuple(column.name for column in endpoints.c)


async def target(conn: AsyncConnection, delivery_id: int) -> Target | None:
    return (await targets(conn, [delivery_id])).get(delivery_id)


async def record_attempts(conn: AsyncConnection, recorded: Sequence[Attempt]) -> None:
    """Insert attempt rows, many in one executemany."""
    if not recorded:
        return
    await _INSERT_ATTEMPTS(
        conn,
        [
            {
                "delivery_id": attempt.delivery_id,
                "started_at": attempt.started_at,
                "duration_ms": attempt.duration_ms,
                "status_code": attempt.status_code,
                "response_body": attempt.response_body,
                "error": None if attempt.error is None else attempt.error[:MAX_ERROR_LENGTH],
                "succeeded": attempt.succeeded,
            }
            for attempt in recorded
        ],
    )


_INSERT_ATTEMPTS = BulkInsert(
    attempts,
    (
        "delivery_id",
        "started_at",
        "duration_ms",
        "status_code",
        "response_body",
        "error",
        "succeeded",
    ),
)


async def mark_delivered(
    conn: AsyncConnection, answers: Mapping[int, int | None], *, now: datetime
) -> None:
    """Deliveries answered 2xx (delivery id -> status code), many in one executemany."""
    if not answers:
        return
    await _MARK_DELIVERED.many(
        conn,
        [
            {"delivery_id": id_, "status_code": code, "answered_at": now}
            for id_, code in answers.items()
        ],
    )


_ANSWERED_AT = bindparam("answered_at", type_=deliveries.c.delivered_at.type)
_MARK_DELIVERED = prepared.Prepared(
    update(deliveries)
    .where(deliveries.c.id == bindparam("delivery_id"))
    .values(
        status=DeliveryStatus.DELIVERED.value,
        attempts=deliveries.c.attempts + 1,
        schedule_attempts=deliveries.c.schedule_attempts + 1,
        last_status_code=bindparam("status_code"),
        last_error=None,
        next_attempt_at=None,
        delivered_at=_ANSWERED_AT,
        updated_at=_ANSWERED_AT,
    )
)


async def attempts_of(conn: AsyncConnection, delivery_id: int) -> list[Attempt]:
    rows = await conn.execute(
        select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.id)
    )
    return [
        Attempt(
            delivery_id=row.delivery_id,
            started_at=row.started_at,
            duration_ms=row.duration_ms,
            status_code=row.status_code,
            response_body=row.response_body,
            error=row.error,
            succeeded=row.succeeded,
        )
        for row in rows
    ]


async def update_delivery(
    conn: AsyncConnection, delivery_id: int, values: Mapping[str, Any]
) -> None:
    await conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(**values))


def delivery_of(row: Row[Any]) -> Delivery:
    return _delivery_from(dict(row._mapping))


def _delivery_from(columns: Mapping[str, Any]) -> Delivery:
    return Delivery(
        id=int(columns["id"]),
        workspace_id=columns["workspace_id"],
        endpoint_id=columns["endpoint_id"],
        event_id=columns["event_id"],
        event_type=columns["event_type"],
        status=DeliveryStatus(columns["status"]),
        attempts=columns["attempts"],
        schedule_attempts=columns["schedule_attempts"],
        next_attempt_at=columns["next_attempt_at"],
        last_status_code=columns["last_status_code"],
        last_error=columns["last_error"],
        created_at=columns["created_at"],
        updated_at=columns["updated_at"],
        delivered_at=columns["delivered_at"],
    )
