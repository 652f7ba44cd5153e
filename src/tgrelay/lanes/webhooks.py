"""The webhooks queue's worker: event deliveries and conversations' calls to the teams' apps."""

from __future__ import annotations

from tgrelay.conversations import jobs as conversations_jobs
from tgrelay.events import delivery as events_delivery
from tgrelay.events import service as events_service
from tgrelay.http import breakers as http_breakers
from tgrelay.http import transport as http_transport
from tgrelay.queue import pacing
from tgrelay.queue.worker import Registry, Worker
from tgrelay.runtime import Runtime

# Events of this process wake the webhooks queue's worker at once (and the serving process
# wakes its lane child through a pipe); those written by another process (an API or a worker
# beside this one) are found by looking: every 20 ms while they flow, which keeps
# bench/deliveries.py's p99 under 100 ms, and after a quiet up to every 2 s, like the other
# workers (queue/pacing.py). A look costs ~1 ms of CPU: at 0.5 s this worker alone took 0.2 %
# of an idle core (bench/idle.py). Issue 22's LISTEN/NOTIFY will make the first event prompt.
WEBHOOK_PACING = pacing.Pacing(busy_seconds=0.02, idle_seconds=2.0)


def client(rt: Runtime) -> http_transport.Client:
    """The client deliveries and calls share (SSRF guard, pool); the caller closes it."""
    return http_transport.Client(
        events_service.target_policy(rt),
        timeout_seconds=rt.settings.webhooks_timeout_seconds,
        max_connections=rt.settings.webhooks_concurrency,
    )


def registry(
    rt: Runtime, client: http_transport.Client, origins: http_breakers.Breakers | None = None
) -> Registry:
    """Event deliveries and conversations' calls (the same client and SSRF guard; a breaker
    per call origin, kept in `origins`)."""
    registry = Registry()
    events_delivery.register(registry, rt, client)
    if origins is None:
        origins = http_breakers.Breakers(conversations_jobs.CALL_BREAKER)
    conversations_jobs.register(registry, rt, client, origins)
    return registry


def worker(rt: Runtime, client: http_transport.Client) -> Worker:
    return Worker(
        rt.db,
        registry(rt, client),
        concurrency=rt.settings.webhooks_concurrency,
        lease_seconds=rt.settings.job_lease_seconds,
        clock=rt.clock,
        metrics=rt.metrics,
        queue=events_service.WEBHOOKS_QUEUE,
        # How long events written by other processes (an API or worker beside this one)
        # may wait; those of this process wake the lane at once.
        pacing=WEBHOOK_PACING,
        # A claim per eighth of the slots: a busy lane (a slot freed per finished POST)
        # claimed one or two jobs at a time, a write transaction and a read each. A job
        # found meanwhile waits at most for an eighth of the running ones to end.
        claim_at_least=max(1, rt.settings.webhooks_concurrency // 8),
    )
