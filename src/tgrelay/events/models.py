"""Records of the events domain: endpoints, deliveries and their attempts."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from tgrelay import breaker

DELIVERY_PREFIX = "dlv_"


class EndpointStatus(enum.StrEnum):
    ENABLED = "enabled"  # receives the events it subscribed to
    DISABLED = "disabled"  # receives nothing; disabled_reason says who or what stopped it


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or for the endpoint's breaker)
    DELIVERED = "delivered"  # the endpoint answered 2xx
    DEAD_LETTER = "dead_letter"  # gave up (schedule exhausted, endpoint disabled); replayable


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """A customer's URL and what it subscribed to; never its secrets."""

    id: str
    workspace_id: str
    url: str
    description: str | None
    event_types: tuple[str, ...] | None  # None: every event type
    # The schema version pinned per type; every other type comes in its latest version.
    versions: dict[str, int]
    status: EndpointStatus
    disabled_reason: str | None
    breaker: breaker.Breaker
    failing_since: datetime | None  # start of the current run of failures
    # While set, the previous secret still signs (rotation overlap).
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One event on its way to one endpoint."""

    id: int
    workspace_id: str
    endpoint_id: str
    event_id: str  # also the webhook-id header, the same on every attempt
    event_type: str
    status: DeliveryStatus
    attempts: int  # every attempt so far, replays included
    schedule_attempts: int  # attempts in the current run of the retry schedule
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None

    @property
    def public_id(self) -> str:
        return f"{DELIVERY_PREFIX}{self.id}"


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One POST of a delivery, as it went."""

    delivery_id: int
    started_at: datetime
    duration_ms: int
    status_code: int | None  # None when no HTTP answer came
    response_body: str | None  # the first 2 KiB of the answer
    error: str | None  # None on success
    succeeded: bool


def parse_delivery_id(public_id: str) -> int | None:
    """`dlv_42` → 42; None for anything else (the API then answers 404)."""
    if not public_id.startswith(DELIVERY_PREFIX):
        return None
    digits = public_id[len(DELIVERY_PREFIX) :]
    return int(digits) if digits.isdigit() and len(digits) < 19 else None
