"""Call steps for real: the conversation_call job POSTs to a local app, signed with the
secret of the workspace's endpoint of the same origin; an answer resumes the conversation,
the first failure sends the fallback at once, retries keep one webhook-id, the deadline
takes on_failure, and a conversation that moved on makes the call moot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.responses import Response

from tests.conversations.running import (
    ADA,
    add_flow,
    conversation_events,
    only_conversation,
    queued,
    replies,
    run_call,
    run_timer,
    says,
    state_of,
)
from tests.dispatching import Dispatching, dispatching
from tgrelay.conversations import call_targets, checks, jobs, runtime
from tgrelay.conversations.models import Status
from tgrelay.events import service as events
from tgrelay.http import breakers, signing, transport
from tgrelay.testing import receiver
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator

START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WHO = {"flow": "lookup", "version": 1, "chat_id": ADA["id"], "user_id": ADA["id"]}
CITY = b'{"variables": {"city": "Berlin"}}'
FALLBACK = "One moment, the city register is slow."


class Switchable:
    """An app answering with `status` and `body`, changeable mid-test."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    async def __call__(self, _delivery: receiver.Delivery) -> Response:
        await asyncio.sleep(0)
        return Response(content=self.body, status_code=self.status)


def lookup(url: str) -> dict[str, Any]:
    return {
        "name": "lookup",
        "trigger": {"type": "command", "command": "/lookup"},
        "timeout_seconds": 600,
        "steps": [
            {
                "id": "zip",
                "kind": "ask",
                "message": "Postal code?",
                "input": {"type": "text"},
                "variable": "zip",
            },
            {
                "id": "check",
                "kind": "call",
                "url": url,
                "timeout_seconds": 2,
                "sets": ["city"],
                "fallback_text": FALLBACK,
                "deadline_seconds": 60,
                "next": "done",
                "on_failure": "sorry",
            },
            {"id": "done", "kind": "end", "message": "You live in {{ city }}."},
            {"id": "sorry", "kind": "end", "message": "We could not check it."},
        ],
    }


@pytest.fixture
def clock() -> Clock:
    return Clock(start=START)


@pytest.fixture
async def relay(
    emulator: RunningEmulator, tmp_path: Path, clock: Clock
) -> AsyncIterator[Dispatching]:
    async with dispatching(emulator, tmp_path, clock=clock, webhooks_allow_private=True) as found:
        yield found


@pytest.fixture
async def app() -> AsyncIterator[tuple[receiver.RunningReceiver, Switchable]]:
    answer = Switchable(200, CITY)
    async with receiver.receiving(answer) as running:
        yield running, answer


@pytest.fixture
async def client(relay: Dispatching) -> AsyncIterator[transport.Client]:
    """The client the app's lifespan makes for workers: the endpoints' SSRF guard settings."""
    http = transport.Client(events.target_policy(relay.rt))
    yield http
    await http.aclose()


async def _set_up(
    relay: Dispatching, app: receiver.RunningReceiver, *, endpoint: bool = True
) -> tuple[BotRecord, str | None]:
    """A bot, the lookup flow calling `app`, and (unless not) an endpoint of the app's
    origin; the bot and the endpoint's secret."""
    await add_flow(relay, lookup(app.url))
    secret = None
    if endpoint:
        created = await events.create_endpoint(
            relay.rt,
            relay.principal,
            url=f"{app.base_url}/events",
            event_types=None,
            description=None,
        )
        secret = created.secret
    return await relay.connect_bot("shop_bot"), secret


async def _calling(relay: Dispatching, bot: BotRecord) -> None:
    await says(relay, bot.id, "/lookup")
    await says(relay, bot.id, "10115")


async def test_an_answer_resumes_the_conversation(
    relay: Dispatching,
    app: tuple[receiver.RunningReceiver, Switchable],
    client: transport.Client,
    clock: Clock,
) -> None:
    """The app gets the step's payload signed with the endpoint's secret; its answer's
    variables are set and the conversation goes on to its end."""
    running, _ = app
    bot, secret = await _set_up(relay, running)
    await _calling(relay, bot)
    [job] = await queued(relay, runtime.CALL)
    calling = await only_conversation(relay)

    produced, delay = await run_call(relay, job, client, breakers.Breakers())

    [request] = running.receiver.deliveries
    row = await only_conversation(relay)
    assert (calling.status, job.queue, delay) == ("calling", runtime.CALL_QUEUE, None)
    assert secret is not None
    signing.verify(secret, headers=request.headers, body=request.body, now=clock())
    assert orjson.loads(request.body) == {
        "flow": "lookup",
        "version": 1,
        "step": "check",
        "user": {
            "id": ADA["id"],
            "first_name": "Ada",
            "last_name": None,
            "username": None,
            "language_code": "en",
        },
        "chat": {"id": ADA["id"]},
        "variables": {"zip": "10115"},
    }
    assert replies(produced) == [("You live in Berlin.", [])]
    assert conversation_events(produced) == [
        ("conversation.completed", {**WHO, "variables": {"zip": "10115", "city": "Berlin"}})
    ]
    assert (row.status, row.step_id) == ("completed", "done")


async def test_the_first_failure_sends_the_fallback_at_once_and_the_answer_resumes(
    relay: Dispatching,
    app: tuple[receiver.RunningReceiver, Switchable],
    client: transport.Client,
) -> None:
    """A 503 tells the user the fallback text and emits step_failed at once, and the job is
    rescheduled on the backoff; a second failure only counts; when the app answers, the
    conversation resumes. Every attempt carries the same webhook-id."""
    running, answer = app
    bot, _ = await _set_up(relay, running)
    await _calling(relay, bot)
    [job] = await queued(relay, runtime.CALL)
    origins = breakers.Breakers()

    answer.status = 503
    first, first_delay = await run_call(relay, job, client, origins)
    second, second_delay = await run_call(relay, job, client, origins)
    waiting = await only_conversation(relay)
    answer.status = 200
    resumed, _ = await run_call(relay, job, client, origins)

    ids = {request.headers["webhook-id"] for request in running.receiver.deliveries}
    assert replies(first) == [(FALLBACK, [])]
    assert conversation_events(first) == [
        ("conversation.step_failed", {**WHO, "step": "check", "reason": "HTTP 503"})
    ]
    assert (replies(second), conversation_events(second)) == ([], [])
    assert first_delay is not None
    assert 0.9 <= first_delay <= 1.1
    assert second_delay is not None
    assert 1.8 <= second_delay <= 2.2
    assert (waiting.status, state_of(waiting).tries) == ("calling", 2)
    assert replies(resumed) == [("You live in Berlin.", [])]
    assert (len(running.receiver.deliveries), ids) == (3, {job.payload["call_id"]})


async def test_past_the_deadline_the_step_takes_on_failure(
    relay: Dispatching,
    app: tuple[receiver.RunningReceiver, Switchable],
    client: transport.Client,
    clock: Clock,
) -> None:
    """A failure at or after the step's deadline gives up: step_failed says so and the
    conversation takes the on_failure branch."""
    running, answer = app
    bot, _ = await _set_up(relay, running)
    await _calling(relay, bot)
    [job] = await queued(relay, runtime.CALL)
    answer.status = 503
    origins = breakers.Breakers()
    await run_call(relay, job, client, origins)

    clock.advance(60)
    produced, delay = await run_call(relay, job, client, origins)

    row = await only_conversation(relay)
    assert delay is None
    assert replies(produced) == [("We could not check it.", [])]
    assert conversation_events(produced) == [
        (
            "conversation.step_failed",
            {
                **WHO,
                "step": "check",
                "reason": "the app did not answer before the deadline: HTTP 503",
            },
        ),
        ("conversation.completed", {**WHO, "variables": {"zip": "10115"}}),
    ]
    assert (row.status, row.step_id) == ("completed", "sorry")


async def test_a_cancelled_conversation_makes_its_pending_call_moot(
    relay: Dispatching,
    app: tuple[receiver.RunningReceiver, Switchable],
    client: transport.Client,
) -> None:
    """/cancel while the app is being called: the call job finds the conversation ended and
    sends nothing."""
    running, _ = app
    bot, _ = await _set_up(relay, running)
    await _calling(relay, bot)
    [job] = await queued(relay, runtime.CALL)
    await says(relay, bot.id, "/cancel")

    produced, delay = await run_call(relay, job, client, breakers.Breakers())

    row = await only_conversation(relay)
    assert (produced.jobs, produced.events, delay) == ([], [], None)
    assert running.receiver.deliveries == []
    assert (row.status, row.end_reason) == (Status.ABANDONED.value, "cancel")


async def test_without_an_endpoint_of_its_origin_the_call_fails_unsent(
    relay: Dispatching,
    app: tuple[receiver.RunningReceiver, Switchable],
    client: transport.Client,
) -> None:
    """No endpoint of the workspace has the call's origin, so nothing can sign it: nothing
    is sent and the step takes on_failure at once."""
    running, _ = app
    bot, _ = await _set_up(relay, running, endpoint=False)
    await _calling(relay, bot)
    [job] = await queued(relay, runtime.CALL)

    produced, _ = await run_call(relay, job, client, breakers.Breakers())

    assert running.receiver.deliveries == []
    assert replies(produced) == [("We could not check it.", [])]
    assert conversation_events(produced)[0] == (
        "conversation.step_failed",
        {
            **WHO,
            "step": "check",
            "reason": f"the app did not answer before the deadline: {jobs.NO_ENDPOINT}",
        },
    )


async def test_a_flow_whose_call_has_no_endpoint_of_its_origin_is_unsigned(
    relay: Dispatching, app: tuple[receiver.RunningReceiver, Switchable]
) -> None:
    """The check POST /v1/flows makes: a call step is pointed at until an endpoint of the
    workspace shares its origin (another port is another origin)."""
    running, _ = app
    flow = checks.parse(lookup(running.url))
    workspace_id = relay.principal.workspace_id
    async with relay.rt.db.engine.connect() as conn:
        before = await call_targets.unsigned(conn, relay.rt, workspace_id, flow)
    await events.create_endpoint(
        relay.rt,
        relay.principal,
        url=running.base_url.replace("127.0.0.1", "localhost"),
        event_types=None,
        description=None,
    )
    async with relay.rt.db.engine.connect() as conn:
        other_host = await call_targets.unsigned(conn, relay.rt, workspace_id, flow)
    await _set_up(relay, running)
    async with relay.rt.db.engine.connect() as conn:
        after = await call_targets.unsigned(conn, relay.rt, workspace_id, flow)

    problem = f'steps[1] (id "check").url: {call_targets.NO_ENDPOINT}'
    assert (before, other_host, after) == ([problem], [problem], [])


async def test_a_long_call_leaves_the_user_the_whole_idle_timeout_after_it(
    relay: Dispatching,
    app: tuple[receiver.RunningReceiver, Switchable],
    client: transport.Client,
    clock: Clock,
) -> None:
    """An answer that comes after longer than timeout_seconds restarts the idle clock: the
    timer set before the call finds the conversation moved and does nothing, and the next
    one is due timeout_seconds after the answer."""
    running, _ = app
    flow = lookup(running.url)
    flow["steps"][1]["next"] = "floor"
    flow["steps"].insert(
        2,
        {
            "id": "floor",
            "kind": "ask",
            "message": "Which floor?",
            "input": {"type": "number"},
            "variable": "floor",
            "next": "done",
        },
    )
    await add_flow(relay, flow)
    await events.create_endpoint(
        relay.rt, relay.principal, url=running.base_url, event_types=None, description=None
    )
    bot = await relay.connect_bot("shop_bot")
    await _calling(relay, bot)
    [call] = await queued(relay, runtime.CALL)

    clock.advance(900)  # longer than the flow's 600 s of idleness
    resumed, _ = await run_call(relay, call, client, breakers.Breakers())
    old, new = await queued(relay, runtime.TIMEOUT)
    stale = await run_timer(relay, old)

    row = await only_conversation(relay)
    assert replies(resumed) == [("Which floor?", [])]
    assert (old.run_at, new.run_at) == (
        START + timedelta(seconds=600),
        clock() + timedelta(seconds=600),
    )
    assert (stale.jobs, stale.events, row.status, row.step_id) == ([], [], "active", "floor")
