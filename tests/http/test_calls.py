"""Signed JSON calls to a team's app: the answer's classification, the wire, and the breaker."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from starlette.responses import Response as StarletteResponse

from tgrelay import breaker
from tgrelay.http import breakers as breakers_
from tgrelay.http import calls, guard, signing, transport
from tgrelay.testing import clock as test_clock
from tgrelay.testing import receiver
from tgrelay.testing.resolver import StaticResolver

ON_PREMISE = guard.TargetPolicy(allow_private=True)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
START = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
PAYLOAD = {"street": "Hauptstraße 1", "city": "Zürich", "zip": "8001"}
Reason = calls.Reason


def _response(
    status: int,
    body: bytes = b"",
    *,
    end: transport.BodyEnd = transport.BodyEnd.COMPLETE,
    retry_after: float | None = None,
    location: str | None = None,
) -> transport.Response:
    return transport.Response(
        status=status,
        duration_seconds=0.01,
        body=body,
        body_end=end,
        retry_after=retry_after,
        location=location,
    )


def _retryable(outcome: calls.CallResult) -> bool | None:
    """Whether a failure is worth retrying; None for an answer."""
    return outcome.retryable if isinstance(outcome, calls.Failed) else None


def _failed(reason: Reason, detail: str, status: int | None = None, **more: Any) -> calls.Failed:
    return calls.Failed(reason=reason, detail=detail, status=status, **more)


@pytest.mark.parametrize(
    ("response", "outcome", "retryable"),
    [
        pytest.param(
            _response(200, b'{"valid": true, "next": "confirm"}'),
            calls.Answered(status=200, json={"valid": True, "next": "confirm"}),
            None,
            id="200-object",
        ),
        pytest.param(_response(201, b"{}"), calls.Answered(status=201, json={}), None, id="201"),
        pytest.param(_response(204), calls.Answered(status=204, json={}), None, id="204-empty"),
        pytest.param(
            _response(200, b"[1, 2]"),
            _failed(Reason.NOT_OBJECT, "answer is JSON array, not an object", 200),
            False,
            id="array",
        ),
        pytest.param(
            _response(200, b'"ok"'),
            _failed(Reason.NOT_OBJECT, "answer is JSON string, not an object", 200),
            False,
            id="string",
        ),
        pytest.param(
            _response(200, b"true"),
            _failed(Reason.NOT_OBJECT, "answer is JSON boolean, not an object", 200),
            False,
            id="boolean",
        ),
        pytest.param(
            _response(200, b"12.5"),
            _failed(Reason.NOT_OBJECT, "answer is JSON number, not an object", 200),
            False,
            id="number",
        ),
        pytest.param(
            _response(200, b"null"),
            _failed(Reason.NOT_OBJECT, "answer is JSON null, not an object", 200),
            False,
            id="null",
        ),
        pytest.param(
            _response(200, b"<html>ok</html>"),
            _failed(
                Reason.NOT_JSON,
                "answer is not JSON (invalid at byte 0)",
                200,
            ),
            False,
            id="html",
        ),
        pytest.param(
            _response(200, b""),
            _failed(
                Reason.NOT_JSON,
                "answer is empty, not JSON",
                200,
            ),
            False,
            id="200-empty",
        ),
        pytest.param(
            _response(200, b"{" * 10, end=transport.BodyEnd.CUT),
            _failed(Reason.TOO_LARGE, "answer is larger than 65536 bytes", 200),
            False,
            id="too-large",
        ),
        pytest.param(
            _response(200, b'{"a":', end=transport.BodyEnd.BROKEN),
            _failed(Reason.BODY_BROKEN, "answer broke off after 5 bytes", 200),
            True,
            id="broken-body",
        ),
        pytest.param(
            _response(500, b"{}"), _failed(Reason.SERVER_ERROR, "HTTP 500", 500), True, id="500"
        ),
        pytest.param(
            _response(503, retry_after=30.0),
            _failed(Reason.SERVER_ERROR, "HTTP 503", 503, retry_after=30.0),
            True,
            id="503-retry-after",
        ),
        pytest.param(
            _response(429, retry_after=120.0),
            _failed(Reason.RATE_LIMITED, "HTTP 429", 429, retry_after=120.0),
            True,
            id="429-retry-after",
        ),
        pytest.param(
            _response(408),
            _failed(Reason.REQUEST_TIMEOUT, "HTTP 408", 408),
            True,
            id="408",
        ),
        pytest.param(
            _response(400, b'{"error": "bad"}'),
            _failed(Reason.CLIENT_ERROR, "HTTP 400", 400),
            False,
            id="400",
        ),
        pytest.param(
            _response(404), _failed(Reason.CLIENT_ERROR, "HTTP 404", 404), False, id="404"
        ),
        pytest.param(
            _response(410), _failed(Reason.CLIENT_ERROR, "HTTP 410", 410), False, id="410"
        ),
        pytest.param(
            _response(302, location="https://elsewhere.example/"),
            _failed(
                Reason.REDIRECT,
                "HTTP 302, redirect to https://elsewhere.example/ not followed",
                302,
            ),
            False,
            id="302",
        ),
        pytest.param(
            _response(304),
            _failed(Reason.REDIRECT, "HTTP 304, redirect to (no Location) not followed", 304),
            False,
            id="304-no-location",
        ),
        pytest.param(
            _response(600), _failed(Reason.UNEXPECTED_STATUS, "HTTP 600", 600), False, id="600"
        ),
    ],
)
def test_classify_judges_every_answer(
    response: transport.Response, outcome: calls.CallResult, retryable: bool | None
) -> None:
    """A 2xx JSON object is the answer; every other answer fails with its reason and retryability."""
    judged = calls.classify(response)

    assert (judged, _retryable(judged)) == (outcome, retryable)


@pytest.mark.parametrize(
    ("failure", "outcome", "retryable"),
    [
        pytest.param(
            transport.RequestFailed("timeout after 5s", timed_out=True),
            _failed(Reason.TIMEOUT, "timeout after 5s"),
            True,
            id="timeout",
        ),
        pytest.param(
            transport.RequestFailed("connection refused"),
            _failed(Reason.UNREACHABLE, "connection refused"),
            True,
            id="connection-refused",
        ),
        pytest.param(
            transport.RequestFailed("DNS: app.test does not resolve"),
            _failed(Reason.UNREACHABLE, "DNS: app.test does not resolve"),
            True,
            id="dns",
        ),
        pytest.param(
            transport.RequestFailed("refused: 10.0.0.1 is a private address", refused=True),
            _failed(Reason.REFUSED, "refused: 10.0.0.1 is a private address"),
            False,
            id="guard",
        ),
    ],
)
def test_failed_judges_every_unanswered_post(
    failure: transport.RequestFailed, outcome: calls.Failed, retryable: bool
) -> None:
    """A POST without an answer is a timeout or unreachable (retryable) or a guard refusal (not)."""
    judged = calls.failed(failure)

    assert (judged, judged.retryable) == (outcome, retryable)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        pytest.param(
            "https://App.Example/hooks/billing?x=1", "https://app.example:443", id="https"
        ),
        pytest.param("http://app.example/", "http://app.example:80", id="http"),
        pytest.param("https://app.example:8443/a", "https://app.example:8443", id="port"),
        pytest.param("https://app.example:443/b", "https://app.example:443", id="explicit-443"),
        pytest.param("http://[2001:db8::1]:8080/", "http://[2001:db8::1]:8080", id="ipv6"),
    ],
)
def test_origin_keys_a_breaker_by_scheme_host_and_port(url: str, key: str) -> None:
    """Paths and queries share one breaker; the implied port is written out."""
    assert breakers_.origin(url) == key


# --- against a local app --------------------------------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[transport.Client]:
    """A client allowed to call loopback receivers."""
    http = transport.Client(ON_PREMISE)
    yield http
    await http.aclose()


@pytest.fixture
def clock() -> test_clock.Clock:
    return test_clock.Clock(start=START)


def _json(status: int, body: bytes) -> receiver.Responder:
    async def respond(_delivery: receiver.Delivery) -> StarletteResponse:
        return StarletteResponse(content=body, status_code=status, media_type="application/json")

    return respond


class Switchable:
    """An app answering with `status` and `body`, changeable mid-test; `hold` makes it wait."""

    def __init__(self, status: int, body: bytes = b"{}") -> None:
        self.status = status
        self.body = body
        self.hold: asyncio.Event | None = None

    async def __call__(self, _delivery: receiver.Delivery) -> StarletteResponse:
        if self.hold is not None:
            await self.hold.wait()
        return StarletteResponse(content=self.body, status_code=self.status)


async def test_call_posts_signed_json_and_returns_the_answer(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """A 200 JSON object is Answered, and the app got the payload signed as events are signed."""
    async with receiver.receiving(_json(200, b'{"valid": true}')) as app:
        outcome = await calls.call(
            client,
            app.url,
            MappingProxyType(PAYLOAD),  # any Mapping, not only a dict
            secret=SECRET,
            timeout=5,
            now=clock,
            call_id="call_fixed",
        )
        [request] = app.receiver.deliveries

    assert outcome == calls.Answered(status=200, json={"valid": True})
    assert (request.method, request.path, orjson.loads(request.body)) == ("POST", "/hook", PAYLOAD)
    assert (request.headers["content-type"], request.headers["webhook-id"]) == (
        "application/json",
        "call_fixed",
    )
    assert request.headers["webhook-timestamp"] == str(int(START.timestamp()))
    signing.verify(SECRET, headers=request.headers, body=request.body, now=clock())


async def test_call_ids_are_fresh_unless_given(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """Two calls without an id carry two different call_ ids."""
    async with receiver.receiving(_json(200, b"{}")) as app:
        for _ in range(2):
            await calls.call(client, app.url, {}, secret=SECRET, timeout=5, now=clock)
        ids = [request.headers["webhook-id"] for request in app.receiver.deliveries]

    assert len(set(ids)) == 2
    assert all(call_id.startswith(calls.CALL_ID_PREFIX) for call_id in ids)


async def test_server_error_is_retryable(client: transport.Client, clock: test_clock.Clock) -> None:
    """A 500 from the app fails the call as a retryable server_error."""
    async with receiver.receiving(_json(500, b'{"error": "db down"}')) as app:
        outcome = await calls.call(client, app.url, PAYLOAD, secret=SECRET, timeout=5, now=clock)

    assert (outcome, _retryable(outcome)) == (_failed(Reason.SERVER_ERROR, "HTTP 500", 500), True)


async def test_slow_app_times_out(client: transport.Client, clock: test_clock.Clock) -> None:
    """An app that does not answer within the step's timeout fails the call as a timeout."""
    never = asyncio.Event()

    async def waits(_delivery: receiver.Delivery) -> int:
        await never.wait()
        return 200

    async with receiver.receiving(waits) as app:
        try:
            outcome = await calls.call(
                client, app.url, PAYLOAD, secret=SECRET, timeout=0.2, now=clock
            )
        finally:
            never.set()  # lets the receiver's request end, so it shuts down at once

    assert outcome == _failed(Reason.TIMEOUT, "timeout after 0.2s")


async def test_redirect_is_not_followed(client: transport.Client, clock: test_clock.Clock) -> None:
    """A 302 fails the call, and the place it points at is never called."""
    async with receiver.receiving() as elsewhere:

        async def redirect(_delivery: receiver.Delivery) -> StarletteResponse:
            return StarletteResponse(status_code=302, headers={"Location": elsewhere.url})

        async with receiver.receiving(redirect) as app:
            outcome = await calls.call(
                client, app.url, PAYLOAD, secret=SECRET, timeout=5, now=clock
            )
        reached = elsewhere.receiver.deliveries

    assert outcome == _failed(
        Reason.REDIRECT, f"HTTP 302, redirect to {elsewhere.url} not followed", 302
    )
    assert reached == []


async def test_answer_of_exactly_the_limit_is_read(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """A JSON object of exactly MAX_ANSWER_BYTES is an answer."""
    padding = "p" * (calls.MAX_ANSWER_BYTES - len(b'{"pad":""}'))
    body = orjson.dumps({"pad": padding})
    assert len(body) == calls.MAX_ANSWER_BYTES

    async with receiver.receiving(_json(200, body)) as app:
        outcome = await calls.call(client, app.url, PAYLOAD, secret=SECRET, timeout=5, now=clock)

    assert outcome == calls.Answered(status=200, json={"pad": padding})


async def test_answer_over_the_limit_is_too_large(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """A JSON object one byte over MAX_ANSWER_BYTES fails the call, not retryable."""
    body = orjson.dumps({"pad": "p" * (calls.MAX_ANSWER_BYTES - len(b'{"pad":""}') + 1)})

    async with receiver.receiving(_json(200, body)) as app:
        outcome = await calls.call(client, app.url, PAYLOAD, secret=SECRET, timeout=5, now=clock)

    assert (outcome, _retryable(outcome)) == (
        _failed(Reason.TOO_LARGE, "answer is larger than 65536 bytes", 200),
        False,
    )


async def test_non_json_answer_is_not_retryable(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """A 200 with an HTML body fails the call as not_json, not retryable."""

    async def html(_delivery: receiver.Delivery) -> StarletteResponse:
        return StarletteResponse(content=b"<html>saved</html>", media_type="text/html")

    async with receiver.receiving(html) as app:
        outcome = await calls.call(client, app.url, PAYLOAD, secret=SECRET, timeout=5, now=clock)

    assert (outcome, _retryable(outcome)) == (
        _failed(Reason.NOT_JSON, "answer is not JSON (invalid at byte 0)", 200),
        False,
    )


async def test_private_address_is_refused_without_a_request(clock: test_clock.Clock) -> None:
    """Under the default policy a loopback target fails as refused and the app gets nothing."""
    strict = transport.Client(guard.TargetPolicy())
    try:
        async with receiver.receiving() as app:
            outcome = await calls.call(
                strict, app.url, PAYLOAD, secret=SECRET, timeout=5, now=clock
            )
            reached = app.receiver.deliveries
    finally:
        await strict.aclose()

    assert (outcome, _retryable(outcome)) == (
        _failed(Reason.REFUSED, "refused: 127.0.0.1 is a loopback address"),
        False,
    )
    assert reached == []


async def test_name_resolving_to_a_private_address_is_refused(clock: test_clock.Clock) -> None:
    """A name that resolves to a private address fails as refused, and does not count against
    the origin's breaker."""
    strict = transport.Client(
        guard.TargetPolicy(), resolver=StaticResolver({"app.test": ["10.1.2.3"]})
    )
    breakers = breakers_.Breakers(breaker.BreakerPolicy(failure_threshold=1))
    try:
        outcome = await calls.call(
            strict,
            "https://app.test/flows/billing",
            PAYLOAD,
            secret=SECRET,
            timeout=5,
            now=clock,
            breakers=breakers,
        )
    finally:
        await strict.aclose()

    assert outcome == _failed(Reason.REFUSED, "refused: app.test resolves to a private address")
    assert breakers.state("https://app.test:443") == breaker.Breaker()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_closed_port_is_unreachable(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """Nothing listening fails the call as unreachable, retryable."""
    url = f"http://127.0.0.1:{_free_port()}/hook"

    outcome = await calls.call(client, url, PAYLOAD, secret=SECRET, timeout=5, now=clock)

    assert outcome == _failed(Reason.UNREACHABLE, "connection refused")


# --- the breaker per origin -----------------------------------------------------------------

POLICY = breaker.BreakerPolicy(failure_threshold=3, open_seconds=30.0, max_open_seconds=600.0)


async def test_breaker_opens_after_consecutive_failures_and_probes_after_the_cool_off(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """Three 500s open the origin for 30 s without further requests; then one probe goes, and
    its success closes the breaker."""
    app_answers = Switchable(500)
    breakers = breakers_.Breakers(POLICY)
    async with receiver.receiving(app_answers) as app:

        async def attempt(path: str = "/hook") -> calls.CallResult:
            url = f"{app.base_url}{path}"
            return await calls.call(
                client, url, PAYLOAD, secret=SECRET, timeout=5, now=clock, breakers=breakers
            )

        failures = [await attempt() for _ in range(3)]
        refused_at_once = await attempt("/other-path")
        clock.advance(29)
        still_open = await attempt()
        requests_while_open = len(app.receiver.deliveries)
        clock.advance(1)
        app_answers.status = 200
        probe = await attempt()
        after = await attempt()
        key = breakers_.origin(app.url)

    assert failures == [_failed(Reason.SERVER_ERROR, "HTTP 500", 500)] * 3
    assert refused_at_once == _failed(
        Reason.BREAKER_OPEN, f"circuit open for {key}", retry_after=30.0
    )
    assert (still_open, _retryable(still_open)) == (
        _failed(Reason.BREAKER_OPEN, f"circuit open for {key}", retry_after=1.0),
        True,
    )
    assert requests_while_open == 3
    assert (probe, after) == (calls.Answered(status=200, json={}),) * 2
    assert breakers.state(key) == breaker.Breaker()


async def test_only_one_probe_goes_while_half_open(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """While the probe is in flight other calls fail at once as breaker_open; a failed probe
    re-opens the origin for twice the cool-off."""
    app_answers = Switchable(500)
    breakers = breakers_.Breakers(POLICY)
    async with receiver.receiving(app_answers) as app:
        key = breakers_.origin(app.url)

        async def attempt() -> calls.CallResult:
            return await calls.call(
                client, app.url, PAYLOAD, secret=SECRET, timeout=5, now=clock, breakers=breakers
            )

        for _ in range(3):
            await attempt()
        clock.advance(30)
        app_answers.hold = asyncio.Event()
        probe = asyncio.create_task(attempt())
        await app.receiver.wait_for(4)
        meanwhile = await attempt()
        app_answers.hold.set()
        probed = await probe
        reopened = breakers.state(key)

    assert meanwhile == _failed(
        Reason.BREAKER_OPEN, f"circuit open for {key}", retry_after=breaker.PROBE_WAIT_SECONDS
    )
    assert probed == _failed(Reason.SERVER_ERROR, "HTTP 500", 500)
    assert reopened == breaker.Breaker(
        state=breaker.BreakerState.OPEN,
        consecutive_failures=4,
        open_count=2,
        opened_at=clock(),
        retry_at=clock() + timedelta(seconds=60),
    )


async def test_cancelled_probe_lets_the_next_call_probe(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """A probe cancelled in flight releases the half-open breaker, so the next call goes."""
    app_answers = Switchable(500)
    breakers = breakers_.Breakers(POLICY)
    async with receiver.receiving(app_answers) as app:

        async def attempt() -> calls.CallResult:
            return await calls.call(
                client, app.url, PAYLOAD, secret=SECRET, timeout=5, now=clock, breakers=breakers
            )

        for _ in range(3):
            await attempt()
        clock.advance(30)
        app_answers.hold = asyncio.Event()
        probe = asyncio.create_task(attempt())
        await app.receiver.wait_for(4)
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
        app_answers.hold.set()
        app_answers.status = 200
        next_call = await attempt()

    assert next_call == calls.Answered(status=200, json={})
    assert breakers.state(breakers_.origin(app.url)) == breaker.Breaker()


async def test_answers_that_are_not_retryable_do_not_count_against_the_origin(
    client: transport.Client, clock: test_clock.Clock
) -> None:
    """A 404 between 500s proves the app alive: the count starts again and the breaker stays
    closed."""
    app_answers = Switchable(500)
    breakers = breakers_.Breakers(POLICY)
    outcomes: list[Reason] = []
    async with receiver.receiving(app_answers) as app:
        for status in (500, 500, 404, 500, 500):
            app_answers.status = status
            outcome = await calls.call(
                client, app.url, PAYLOAD, secret=SECRET, timeout=5, now=clock, breakers=breakers
            )
            assert isinstance(outcome, calls.Failed)
            outcomes.append(outcome.reason)
        state = breakers.state(breakers_.origin(app.url))

    assert outcomes == [Reason.SERVER_ERROR] * 2 + [Reason.CLIENT_ERROR] + [Reason.SERVER_ERROR] * 2
    assert (state.state, state.consecutive_failures) == (breaker.BreakerState.CLOSED, 2)
