"""The conversations' jobs: the idle timer, and a call step's POST with its durable retries.

conversation_timeout (transactional, default queue): a timer whose `last_input_at` is no
longer the state's, or that finds the conversation not waiting for the user, does nothing;
a due one gives the engine IdleTimeout.

conversation_call (no transaction while it waits on the app, webhooks queue): the POST is
signed with the secret of the workspace's endpoint of the same origin (`events.service.
call_secret`) and carries the same webhook-id on every attempt. An answer resumes the
conversation; the first failure tells the engine at once (the user gets the fallback text)
and the job is rescheduled on the queue's backoff up to the step's deadline; a failure that
retrying cannot help, or one at the deadline, takes the step's on_failure. The outcome is
fed to the engine in the transaction that completes or reschedules the job. A conversation
that moved on meanwhile (cancelled, timed out) makes the call moot: nothing is sent.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import breaker
from tgrelay.conversations import call_targets, runtime
from tgrelay.conversations.models import (
    CallFailed,
    CallSucceeded,
    IdleTimeout,
    Input,
    Status,
)
from tgrelay.events import service as events
from tgrelay.http import breakers as http_breakers
from tgrelay.http import calls, transport
from tgrelay.queue import retry, worker
from tgrelay.queue.models import Finish, Job
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)

NO_ENDPOINT = f"{call_targets.NO_ENDPOINT}: the call cannot be signed"
# Retries of a failed call: the queue's exponential backoff, capped so that a call whose
# app came back is resumed within a minute (the step's deadline bounds them all). An app's
# Retry-After or the open breaker's wait lengthens a pause, up to the same cap.
CALL_RETRY = retry.RetryPolicy(base_delay=1.0, factor=2.0, max_delay=60.0)
# Each origin's breaker in a worker process: users are waiting, so a dead app is probed at
# least once a minute (events' endpoints wait up to 10 minutes between probes).
CALL_BREAKER = breaker.BreakerPolicy(open_seconds=10.0, max_open_seconds=60.0)


def register(
    registry: worker.Registry,
    rt: Runtime,
    client: transport.Client,
    breakers: http_breakers.Breakers,
    *,
    rand: Callable[[], float] = random.random,
) -> None:
    """Register the call job (its registry's worker holds the HTTP client)."""

    async def call(job: Job) -> Finish | None:
        return await _call(rt, client, breakers, job, rand)

    registry.register(runtime.CALL, call, transactional=False)


def register_timer(registry: worker.Registry, rt: Runtime) -> None:
    """Register the idle timer's job (transactional: it moves the conversation)."""

    async def timed_out(conn: AsyncConnection, job: Job) -> None:
        found = await runtime.live(conn, str(job.payload["conversation_id"]))
        if found is None:
            return
        state = found.state
        expected = datetime.fromisoformat(str(job.payload["last_input_at"]))
        if state.status is not Status.ACTIVE or state.last_input_at != expected:
            return  # stale: the conversation moved since this timer was set
        try:
            await runtime.feed(conn, rt, found, IdleTimeout())
        except runtime.Moved:
            log.info("conversation.timer_raced", conversation_id=found.row.id)

    registry.register(runtime.TIMEOUT, timed_out)


async def _call(
    rt: Runtime,
    client: transport.Client,
    breakers: http_breakers.Breakers,
    job: Job,
    rand: Callable[[], float],
) -> Finish | None:
    payload = job.payload
    conversation_id = str(payload["conversation_id"])
    step = str(payload["step"])
    url = str(payload["url"])
    async with rt.db.engine.connect() as conn:
        found = await runtime.live(conn, conversation_id)
        if not _waits_for(found, step):
            return None  # moot: cancelled, timed out or moved on meanwhile
        assert found is not None
        failures = found.state.tries  # the call's failed attempts so far (the engine counts)
        secret = await events.call_secret(conn, rt, str(payload["workspace_id"]), url)
    if secret is None:
        return _finish(
            rt,
            conversation_id,
            step,
            CallFailed(step=step, reason=NO_ENDPOINT, deadline_passed=True),
        )
    result = await calls.call(
        client,
        url,
        payload["body"],
        secret=secret,
        timeout=float(payload["timeout_seconds"]),
        now=rt.clock,
        breakers=breakers,
        call_id=str(payload["call_id"]),
    )
    log.info(
        "conversation.called",
        conversation_id=conversation_id,
        step=step,
        outcome="answered" if isinstance(result, calls.Answered) else str(result.reason),
    )
    if isinstance(result, calls.Answered):
        return _finish(rt, conversation_id, step, CallSucceeded(step=step, answer=result.json))
    now = rt.clock()
    deadline = datetime.fromisoformat(str(payload["deadline"]))
    if not result.retryable or now >= deadline:
        failed = CallFailed(step=step, reason=result.detail, deadline_passed=True)
        return _finish(rt, conversation_id, step, failed)
    delay = retry.delay_seconds(CALL_RETRY, attempts=failures + 1, rand=rand())
    delay = max(delay, result.retry_after or 0.0)
    delay = min(delay, CALL_RETRY.max_delay, (deadline - now).total_seconds())
    raise retry.Reschedule(
        delay,
        result.detail,
        record=_finish(
            rt,
            conversation_id,
            step,
            CallFailed(step=step, reason=result.detail, deadline_passed=False),
        ),
    )


def _waits_for(found: runtime.Live | None, step: str) -> bool:
    return found is not None and found.state.status is Status.CALLING and found.state.step == step


def _finish(rt: Runtime, conversation_id: str, step: str, event: Input) -> Finish:
    """Feed the call's outcome in the transaction that records the job's."""

    async def record(conn: AsyncConnection) -> None:
        found = await runtime.live(conn, conversation_id)
        if not _waits_for(found, step):
            return
        assert found is not None
        try:
            await runtime.feed(conn, rt, found, event)
        except runtime.Moved:
            log.info("conversation.call_raced", conversation_id=conversation_id, step=step)

    return record
