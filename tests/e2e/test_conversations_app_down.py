"""Issue 21's outage check end to end: the team's app down for 10 minutes while users wait at
a call step. Through the emulator and `serve`'s app and workers, with both clocks moved (no
real 10-minute wait): every user gets the fallback text at once, retries come due as the
clock moves, and once the app is back every conversation completes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, func, or_, select
from starlette.responses import Response

from tgrelay.conversations import jobs, runtime
from tgrelay.db import tables
from tgrelay.testing import receiver
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.testing.serving import serving

from .harness import HeldPort, Tgrelay, eventually, free_port, running_tgrelay, settings_for

GENEROUS = (1000, 1.0)  # flows, not limits
STEP_SECONDS = 30.0  # how long a condition may take on the shared machine
USERS: list[dict[str, Any]] = [
    {"id": 8301 + n, "is_bot": False, "first_name": f"User{n}", "language_code": "en"}
    for n in range(5)
]
QUESTION = "Your postal code?"
FALLBACK = "Our address register is down; I will carry on as soon as it answers."
OUTAGE_SECONDS = 600
CLOCK_STEP_SECONDS = 30  # the clocks move by this much, then every due retry runs
CITY = orjson.dumps({"variables": {"city": "Berlin"}})


def lookup(url: str) -> dict[str, Any]:
    """Ask a postal code, let the app find its city (a deadline well past the outage)."""
    return {
        "name": "lookup",
        "trigger": {"type": "command", "command": "/lookup"},
        "timeout_seconds": 900,
        "steps": [
            {
                "id": "zip",
                "kind": "ask",
                "message": QUESTION,
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
                "deadline_seconds": 1800,
                "next": "done",
                "on_failure": "sorry",
            },
            {"id": "done", "kind": "end", "message": "You live in {{ city }}."},
            {"id": "sorry", "kind": "end", "message": "We could not check it."},
        ],
    }


async def app_answers(delivery: receiver.Delivery) -> Response:
    """The team's app once it is back: the city for a lookup, 200 for events."""
    if delivery.path == "/check":
        return Response(content=CITY, status_code=200, media_type="application/json")
    return Response(status_code=200)


async def calls_due(relay: Tgrelay, clock: Clock) -> int:
    """Call jobs whose retry is due by the service's clock, or that a worker runs now: a
    claimed one has not yet failed and come back for later (moving the clock before it has
    would let its next retry skip a step)."""
    jobs_ = tables.jobs.c
    due = and_(jobs_.state == "pending", jobs_.run_at <= clock())
    async with relay.runtime.db.engine.connect() as conn:
        found = await conn.scalar(
            select(func.count())
            .select_from(tables.jobs)
            .where(jobs_.kind == runtime.CALL, or_(due, jobs_.state == "running"))
        )
    return int(found or 0)


async def statuses(relay: Tgrelay) -> list[tuple[int, str, str | None]]:
    """Every conversation's (user, status, step), by user."""
    response = await relay.api.get("/v1/conversations", params={"limit": 50})
    assert response.status_code == 200, response.text
    return sorted((c["user_id"], c["status"], c["step"]) for c in response.json()["conversations"])


async def test_the_app_down_for_ten_minutes_delays_every_conversation_and_loses_none(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Five users answer the question before a call step while nothing listens at the app's
    port: each gets the fallback text once, before either clock moves; the clocks move 10
    minutes in 30-second steps, every due retry running (and failing) at each, the
    conversations still calling; the app comes back and, within the calls' breaker's longest
    cool-off plus the retry's longest pause, every conversation completes with the app's
    answer: one request per conversation reached the app, and nobody got the fallback twice
    or the on_failure text."""
    clock = Clock()
    telegram = emulator.emulator
    port, app_port = free_port(), HeldPort()
    origin = f"http://127.0.0.1:{app_port.port}"
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=False,
        port=port,
        webhooks_allow_private=True,
        send_limit_per_chat=GENEROUS,
        send_limit_per_group=GENEROUS,
    )

    def moved(seconds: float) -> None:
        clock.advance(seconds)
        telegram.clock.advance(seconds)

    async with running_tgrelay(settings, port, clock=clock) as relay:
        endpoint = await relay.api.post(
            "/v1/endpoints",
            json={"url": f"{origin}/events", "event_types": ["conversation.completed"]},
        )
        assert endpoint.status_code == 201, endpoint.text
        flow = await relay.api.post("/v1/flows", json=lookup(f"{origin}/check"))
        assert flow.status_code == 201, flow.text
        bot = telegram.create_bot("lookup_bot")
        await relay.connect_bot(bot.token)

        def texts(user: dict[str, Any]) -> list[str]:
            return [m.get("text", "") for m in telegram.sent_messages(user["id"], bot_id=bot.id)]

        def every_user_got(expected: list[str]) -> Any:
            async def check() -> bool:
                return all(texts(user) == expected for user in USERS)

            return check

        for user in USERS:
            telegram.send_message(bot.id, user, None, "/lookup")
        await eventually(every_user_got([QUESTION]), timeout=STEP_SECONDS)
        for n, user in enumerate(USERS):
            telegram.send_message(bot.id, user, None, f"1011{n}")
        await eventually(every_user_got([QUESTION, FALLBACK]), timeout=STEP_SECONDS)

        async def retried() -> bool:
            return await calls_due(relay, clock) == 0

        for _ in range(OUTAGE_SECONDS // CLOCK_STEP_SECONDS):
            moved(CLOCK_STEP_SECONDS)
            await eventually(retried, timeout=STEP_SECONDS)
        during = await statuses(relay)
        attempts = await _call_attempts(relay)

        app = receiver.Receiver(app_answers)
        app_port.release()
        async with serving(app, port=app_port.port, lifespan="off"):
            # The origin's breaker opened during the outage: the calls wait for its next
            # probe, then each for its own next retry.
            back_for = 0
            while back_for < OUTAGE_SECONDS and not all(
                status == "completed" for _, status, _ in await statuses(relay)
            ):
                moved(CLOCK_STEP_SECONDS)
                back_for += CLOCK_STEP_SECONDS
                await eventually(retried, timeout=STEP_SECONDS)
            done = [QUESTION, FALLBACK, "You live in Berlin."]
            await eventually(every_user_got(done), timeout=STEP_SECONDS)
            after = await statuses(relay)
            checks = [d for d in app.deliveries if d.path == "/check"]

    assert during == [(user["id"], "calling", "check") for user in USERS]
    # Retried as the clock moved: at least once a minute (the backoff's and the calls'
    # breaker's longest wait), some short-circuited while the breaker was open.
    assert min(attempts) >= OUTAGE_SECONDS // 60, attempts
    # The breaker's probe within its longest cool-off; the calls it turned away meanwhile
    # sleep out their pause (at most the retry's longest) even once the probe succeeded.
    assert back_for <= jobs.CALL_BREAKER.max_open_seconds + jobs.CALL_RETRY.max_delay
    assert after == [(user["id"], "completed", "done") for user in USERS]
    assert sorted(orjson.loads(d.body)["variables"]["zip"] for d in checks) == [
        f"1011{n}" for n in range(len(USERS))
    ]
    assert len({d.headers["webhook-id"] for d in checks}) == len(USERS)


async def _call_attempts(relay: Tgrelay) -> list[int]:
    """Each conversation's failed calls so far, as its state counts them (`tries`)."""
    async with relay.runtime.db.engine.connect() as conn:
        states = (await conn.scalars(select(tables.conversations.c.state))).all()
    return sorted(int(orjson.loads(state)["tries"]) for state in states)
