"""The deliver_event job: one signed POST of an event to an endpoint, and what follows from it.

Each attempt is one job, run in the worker's webhook lane as a grouped kind. The POST
happens outside any transaction; its outcome (the attempt row, the delivery's new state,
the next attempt's job, the endpoint's breaker) commits with the job's completion, in one
transaction with the outcomes of the other attempts that finished meanwhile. A worker that
dies mid-POST leaves the job to be rescued and the same delivery (same webhook-id) sent
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiodataloader import DataLoader
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import breaker
from tgrelay.events import schedule, service, store, telemetry
from tgrelay.events.models import Attempt, DeliveryStatus, Endpoint, EndpointStatus
from tgrelay.http import signing, transport
from tgrelay.queue.models import Job
from tgrelay.queue.retry import Reschedule
from tgrelay.queue.worker import Registry
from tgrelay.runtime import Runtime

# How long an attempt waits for one of its endpoint's in-flight slots before giving its
# worker slot back (rescheduling): long enough for a healthy endpoint to answer, short
# enough that a slow one cannot gather the lane's slots.
SLOT_WAIT_SECONDS = 1.0
# Targets read per query: a claim's worth of attempts, well under SQLite's parameter limit.
MAX_TARGETS_PER_READ = 500


class EndpointSlots:
    """At most `limit` POSTs in flight per endpoint in this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def slot(self, endpoint_id: str) -> AsyncIterator[bool]:
        """Yields True holding a slot, or False when none freed up in SLOT_WAIT_SECONDS."""
        semaphore = self._semaphores.get(endpoint_id)
        if semaphore is None:
            semaphore = self._semaphores[endpoint_id] = asyncio.Semaphore(self.limit)
        if semaphore.locked():  # else acquire() returns at once: no timer needed
            try:
                async with asyncio.timeout(SLOT_WAIT_SECONDS):
                    await semaphore.acquire()
            except TimeoutError:
                yield False
                return
        else:
            await semaphore.acquire()
        try:
            yield True
        finally:
            semaphore.release()


@dataclass(frozen=True, kw_only=True)
class Result:
    """What one POST came to, before it is judged."""

    started_at: datetime
    duration_ms: int
    status_code: int | None
    response_body: str | None
    retry_after: float | None
    error: str | None


def policy_of(rt: Runtime) -> breaker.BreakerPolicy:
    return breaker.BreakerPolicy(
        failure_threshold=rt.settings.webhooks_breaker_failures,
        open_seconds=rt.settings.webhooks_breaker_open_seconds,
    )


def schedule_of(rt: Runtime) -> schedule.Schedule:
    return schedule.Schedule(
        delays=rt.settings.webhooks_retry_schedule,
        jitter=rt.settings.webhooks_retry_jitter,
        disable_after=timedelta(seconds=rt.settings.webhooks_disable_after_seconds),
    )


class Outcome:
    """What one attempt job came to, for its completing transaction to record."""


@dataclass(frozen=True, kw_only=True)
class Attempted(Outcome):
    """One POST made, to be recorded and judged."""

    target: store.Target
    result: Result
    outcome: schedule.Outcome
    rand: float  # the retry's jitter, drawn when the attempt ran

    @property
    def attempt(self) -> Attempt:
        return Attempt(
            delivery_id=self.target.delivery.id,
            started_at=self.result.started_at,
            duration_ms=self.result.duration_ms,
            status_code=self.result.status_code,
            response_body=self.result.response_body,
            error=self.result.error,
            succeeded=self.outcome is schedule.Outcome.DELIVERED,
        )


@dataclass(frozen=True, kw_only=True)
class GivenUp(Outcome):
    """No POST: the endpoint was deleted or disabled since the attempt was queued."""

    delivery_id: int
    reason: str


def register(registry: Registry, rt: Runtime, client: transport.Client) -> None:
    """Register deliver_event, sending through `client` (opened and closed by the app)."""
    slots = EndpointSlots(rt.settings.webhooks_concurrency_per_endpoint)
    rules = schedule_of(rt)
    policy = policy_of(rt)
    rand = random.Random()
    loader: DataLoader[int, store.Target | None] | None = None

    async def load_targets(delivery_ids: list[int]) -> list[store.Target | None]:
        async with rt.db.engine.connect() as conn:
            found = await store.targets(conn, delivery_ids)
        return [found.get(delivery_id) for delivery_id in delivery_ids]

    async def deliver_event(job: Job) -> Outcome | None:
        nonlocal loader
        if job.subject_id is None:
            return None
        if loader is None:  # made in the running loop, which it binds to
            # The attempts a claim starts together read their targets in one query.
            loader = DataLoader(load_targets, cache=False, max_batch_size=MAX_TARGETS_PER_READ)
        found = await loader.load(job.subject_id)
        if found is None or found.delivery.status is not DeliveryStatus.PENDING:
            return None  # delivered or given up meanwhile (a replay queued a second job)
        endpoint = found.endpoint
        if found.endpoint_deleted or endpoint.status is EndpointStatus.DISABLED:
            reason = (
                "endpoint deleted"
                if found.endpoint_deleted
                else f"endpoint disabled: {endpoint.disabled_reason}"
            )
            return GivenUp(delivery_id=found.delivery.id, reason=reason)
        now = rt.clock()
        admission, admitted = breaker.admit(policy, endpoint.breaker, now=now)
        if not admission.allowed:
            raise Reschedule(admission.wait_seconds, f"circuit open for {endpoint.id}")
        if admission.probe and not await _claim_probe(rt, endpoint, admitted):
            # Ask again soon: the probe's answer decides for everyone within seconds.
            wait = min(breaker.PROBE_WAIT_SECONDS, policy.open_seconds)
            raise Reschedule(wait, f"another attempt probes {endpoint.id}")
        async with slots.slot(endpoint.id) as acquired:
            if not acquired:
                if admission.probe:  # let the next attempt probe instead of waiting it out
                    await _release_probe(rt, endpoint.id, admitted)
                raise Reschedule(0.1 + rand.random() * 0.4, f"{endpoint.id} has no free slot")
            result = await _post(rt, client, found)
        # No log line per attempt: delivery_attempts records each, and the API shows them.
        outcome = schedule.classify(result.status_code)
        return Attempted(target=found, result=result, outcome=outcome, rand=rand.random())

    async def record(conn: AsyncConnection, outcomes: Sequence[Outcome]) -> None:
        await record_outcomes(conn, rt, outcomes, rules=rules, policy=policy)

    registry.register_grouped(service.DELIVER_EVENT, deliver_event, record)


async def _claim_probe(rt: Runtime, endpoint: Endpoint, admitted: breaker.Breaker) -> bool:
    """Take the half-open probe for every process; False when another worker took it first."""
    async with rt.db.transaction() as conn:
        current = await store.get_endpoint(
            conn, endpoint.workspace_id, endpoint.id, for_update=True
        )
        if current is None or current.breaker != endpoint.breaker:
            return False
        await store.update_endpoint(conn, endpoint.id, store.breaker_values(admitted))
    return True


async def _release_probe(rt: Runtime, endpoint_id: str, probing: breaker.Breaker) -> None:
    async with rt.db.transaction() as conn:
        released = breaker.release_probe(probing, now=rt.clock())
        await store.update_endpoint(conn, endpoint_id, store.breaker_values(released))


async def _post(rt: Runtime, client: transport.Client, found: store.Target) -> Result:
    started = rt.clock()
    keys = service.signing_secrets(rt, found.secrets, now=started)
    headers = signing.headers(
        keys, msg_id=found.delivery.event_id, timestamp=started, body=found.body
    )
    try:
        with telemetry.attempt_span(rt, found) as span_id:
            headers = {**headers, **telemetry.headers_of(found.trace_id, span_id)}
            response = await client.post(found.endpoint.url, found.body.encode(), headers)
    except transport.RequestFailed as failure:
        telemetry.attempted(rt, schedule.Outcome.FAILED, failure.duration_seconds)
        return Result(
            started_at=started,
            duration_ms=round(failure.duration_seconds * 1000),
            status_code=None,
            response_body=None,
            retry_after=None,
            error=failure.reason,
        )
    error = None
    telemetry.attempted(rt, schedule.classify(response.status), response.duration_seconds)
    if schedule.classify(response.status) is not schedule.Outcome.DELIVERED:
        error = f"HTTP {response.status}"
        if response.location:
            error += f" (redirect to {response.location} not followed)"
    return Result(
        started_at=started,
        duration_ms=round(response.duration_seconds * 1000),
        status_code=response.status,
        response_body=response.body_prefix,
        retry_after=response.retry_after,
        error=error,
    )


async def record_outcomes(
    conn: AsyncConnection,
    rt: Runtime,
    outcomes: Sequence[Outcome],
    *,
    rules: schedule.Schedule,
    policy: breaker.BreakerPolicy,
) -> None:
    """Record attempts and decide what follows, for many jobs in their completing transaction.

    An endpoint whose every attempt here succeeded takes the bulk path: its deliveries are
    marked in one statement and its breaker closed in another. An endpoint with a failure
    among them has its outcomes applied one by one, in the order they finished, so its
    breaker counts exactly as if each had committed alone.
    """
    now = rt.clock()
    attempted = [outcome for outcome in outcomes if isinstance(outcome, Attempted)]
    await store.record_attempts(conn, [outcome.attempt for outcome in attempted])
    telemetry.dead_lettered(conn, rt, sum(isinstance(outcome, GivenUp) for outcome in outcomes))
    for outcome in outcomes:
        if isinstance(outcome, GivenUp):
            await store.update_delivery(
                conn,
                outcome.delivery_id,
                {
                    "status": DeliveryStatus.DEAD_LETTER.value,
                    "next_attempt_at": None,
                    "last_error": outcome.reason,
                    "updated_at": now,
                },
            )
    by_endpoint: dict[str, list[Attempted]] = {}
    for outcome in attempted:
        by_endpoint.setdefault(outcome.target.endpoint.id, []).append(outcome)
    delivered: dict[int, int | None] = {}
    healthy: list[str] = []
    for endpoint_id, group in by_endpoint.items():
        if all(outcome.outcome is schedule.Outcome.DELIVERED for outcome in group):
            delivered |= {o.target.delivery.id: o.result.status_code for o in group}
            healthy.append(endpoint_id)
            continue
        for outcome in group:
            await _judge(conn, rt, outcome, rules=rules, policy=policy, now=now)
    await store.mark_delivered(conn, delivered, now=now)
    await store.close_breakers(conn, healthy)


async def _judge(
    conn: AsyncConnection,
    rt: Runtime,
    attempted: Attempted,
    *,
    rules: schedule.Schedule,
    policy: breaker.BreakerPolicy,
    now: datetime,
) -> None:
    """Apply one attempt's outcome (its row is recorded already): the exact, slow path."""
    delivery = attempted.target.delivery
    result = attempted.result
    endpoint_id = attempted.target.endpoint.id
    if attempted.outcome is schedule.Outcome.DELIVERED:
        await store.mark_delivered(conn, {delivery.id: result.status_code}, now=now)
        await store.close_breakers(conn, [endpoint_id])
        return
    values: dict[str, object] = {
        "attempts": delivery.attempts + 1,
        "schedule_attempts": delivery.schedule_attempts + 1,
        "last_status_code": result.status_code,
        "last_error": result.error,
        "updated_at": now,
    }
    # Read again under the transaction: other attempts to this endpoint ran meanwhile.
    endpoint = await store.get_endpoint(
        conn, attempted.target.endpoint.workspace_id, endpoint_id, for_update=True
    )
    if attempted.outcome is schedule.Outcome.GONE:
        values |= {"status": DeliveryStatus.DEAD_LETTER.value, "next_attempt_at": None}
        await store.update_delivery(conn, delivery.id, values)
        telemetry.dead_lettered(conn, rt, 1)
        if endpoint is not None and endpoint.status is EndpointStatus.ENABLED:
            await service.disable_endpoint(
                conn, rt, endpoint, reason="the endpoint answered 410 Gone", now=now
            )
        return
    retry_at = schedule.next_attempt_at(
        rules,
        attempts_done=delivery.schedule_attempts + 1,
        now=now,
        retry_after=result.retry_after,
        rand=attempted.rand,
    )
    if retry_at is None:
        values |= {
            "status": DeliveryStatus.DEAD_LETTER.value,
            "next_attempt_at": None,
            "last_error": f"retry schedule exhausted; last: {result.error}",
        }
        telemetry.dead_lettered(conn, rt, 1)
    else:
        values["next_attempt_at"] = retry_at
    await store.update_delivery(conn, delivery.id, values)
    if retry_at is not None:
        await service.enqueue_attempts(
            conn, rt, [delivery.id], run_at=retry_at, trace_ids=[attempted.target.trace_id]
        )
    if endpoint is not None:
        await _failed(conn, rt, endpoint, rules=rules, policy=policy, now=now)


async def _failed(
    conn: AsyncConnection,
    rt: Runtime,
    endpoint: Endpoint,
    *,
    rules: schedule.Schedule,
    policy: breaker.BreakerPolicy,
    now: datetime,
) -> None:
    tripped = breaker.record_failure(policy, endpoint.breaker, now=now)
    failing_since = endpoint.failing_since or now
    await store.update_endpoint(
        conn, endpoint.id, store.breaker_values(tripped) | {"failing_since": failing_since}
    )
    if endpoint.status is EndpointStatus.ENABLED and schedule.failing_too_long(
        rules, failing_since=failing_since, now=now
    ):
        days = rules.disable_after.total_seconds() / 86400
        await service.disable_endpoint(
            conn, rt, endpoint, reason=f"failing without a success for {days:g} days", now=now
        )
