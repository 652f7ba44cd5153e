"""The per-bot circuit breaker of `TelegramClients`, through real HTTP: the emulator behind a
front server that passes requests through or, during an outage, answers as Telegram's front
servers do while the Bot API is down."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from starlette.responses import Response

from tgrelay import errors
from tgrelay.breaker import BreakerPolicy
from tgrelay.errors import TelegramCircuitOpen
from tgrelay.observability import Metrics
from tgrelay.telegram.client import TelegramClient, TelegramClients
from tgrelay.testing import receiver
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import BotRecord, Limit, Limits
from tgrelay.testing.emulator_server import RunningEmulator

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = BreakerPolicy(failure_threshold=3, open_seconds=30.0, max_open_seconds=600.0)
USER_ID = 4242
USER = {"id": USER_ID, "is_bot": False, "first_name": "Ada"}

# What nginx in front of the Bot API answers while the API behind it is down.
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class Front:
    """A receiver's responder standing in for Telegram's front servers: requests go on to the
    emulator, or get `outage` while it is set; `hold` keeps requests waiting until it is set."""

    def __init__(self, upstream: httpx.AsyncClient) -> None:
        self.upstream = upstream
        self.outage: Response | None = None
        self.hold: asyncio.Event | None = None

    async def __call__(self, delivery: receiver.Delivery) -> Response:
        if self.hold is not None:
            await self.hold.wait()
        if self.outage is not None:
            return self.outage
        answer = await self.upstream.request(
            delivery.method,
            delivery.path,
            content=delivery.body,
            headers={"content-type": delivery.headers.get("content-type", "")},
        )
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
        )


def nginx_502() -> Response:
    return Response(NGINX_502, status_code=502, media_type="text/html")


def json_502() -> Response:
    return Response(
        b'{"ok":false,"error_code":502,"description":"Bad Gateway"}',
        status_code=502,
        media_type="application/json",
    )


@dataclass(frozen=True, kw_only=True)
class Setup:
    emulator: RunningEmulator
    front: Front
    received: receiver.Receiver
    clients: TelegramClients
    clock: Clock
    metrics: Metrics
    bot: BotRecord
    client: TelegramClient

    def reached(self) -> list[str]:
        """The Bot API methods that reached the front, in order."""
        return [delivery.path.rsplit("/", 1)[-1] for delivery in self.received.deliveries]

    def gauge(self, bot_id: int | None = None) -> float | None:
        return self.metrics.registry.get_sample_value(
            "tgrelay_telegram_breaker_open", {"bot_id": str(bot_id or self.bot.id)}
        )


@pytest.fixture
async def setup(emulator: RunningEmulator) -> AsyncIterator[Setup]:
    async with (
        httpx.AsyncClient(base_url=emulator.base_url) as upstream,
        receiver.receiving(Front(upstream)) as front,
    ):
        assert isinstance(front.receiver.respond, Front)
        clock = Clock(start=START)
        metrics = Metrics()
        clients = TelegramClients(front.base_url, metrics, breaker_policy=POLICY, clock=clock)
        bot = emulator.emulator.create_bot("breaker_bot")
        try:
            yield Setup(
                emulator=emulator,
                front=front.receiver.respond,
                received=front.receiver,
                clients=clients,
                clock=clock,
                metrics=metrics,
                bot=bot,
                client=clients.for_token(bot.token),
            )
        finally:
            await clients.aclose()


async def outcome(call: Awaitable[object]) -> str:
    """The string "ok", or the error's class and message."""
    try:
        await call
    except errors.TelegramError as exc:
        return f"{type(exc).__name__}: {exc.message}"
    return "ok"


def open_message(bot_id: int, method: str, *, failures: int = 3, seconds: int = 30) -> str:
    return (
        f"{method}: circuit open for bot {bot_id} after {failures} "
        f"consecutive failures; next probe in {seconds}s"
    )


def circuit_open(bot_id: int, method: str, *, failures: int = 3, seconds: int = 30) -> str:
    """`outcome` of a call the open breaker held back."""
    return (
        f"TelegramCircuitOpen: {open_message(bot_id, method, failures=failures, seconds=seconds)}"
    )


@pytest.mark.parametrize(
    ("answer", "failure"),
    [
        pytest.param(nginx_502, "getMe: the answer was not JSON", id="nginx-html-502"),
        pytest.param(json_502, "getMe: Bad Gateway", id="bot-api-json-502"),
    ],
)
async def test_5xx_answers_open_the_breaker_and_then_calls_fail_fast(
    setup: Setup, answer: Callable[[], Response], failure: str
) -> None:
    """After `failure_threshold` 5xx answers in a row, every call of the bot fails at once with
    TelegramCircuitOpen, saying why and when, and no request reaches the server."""
    setup.front.outage = answer()
    outcomes = [await outcome(setup.client.get_me()) for _ in range(4)]
    with pytest.raises(TelegramCircuitOpen) as refused:
        await setup.client.send_message(chat_id=USER_ID, text="hello")
    assert (
        outcomes,
        (refused.value.message, refused.value.method, refused.value.retry_after),
        setup.reached(),
        setup.gauge(),
    ) == (
        [f"TelegramUnavailable: {failure}"] * 3 + [circuit_open(setup.bot.id, "getMe")],
        (open_message(setup.bot.id, "sendMessage"), "sendMessage", 30.0),
        ["getMe"] * 3,
        1.0,
    )


async def test_unreachable_telegram_opens_the_breaker() -> None:
    """Refused connections count as failures like 5xx answers do."""
    with socket.socket() as probe:  # a port nothing listens on once the socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clients = TelegramClients(
        f"http://127.0.0.1:{port}", Metrics(), breaker_policy=POLICY, clock=Clock(start=START)
    )
    client = clients.for_token("123456:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    try:
        kinds = []
        for _ in range(4):
            with pytest.raises(errors.TelegramUnavailable) as caught:
                await client.get_me()
            kinds.append(type(caught.value).__name__)
    finally:
        await clients.aclose()
    assert kinds == ["TelegramUnavailable"] * 3 + ["TelegramCircuitOpen"]


async def test_after_the_cool_off_one_probe_goes_and_its_success_closes_the_breaker(
    setup: Setup,
) -> None:
    """Once the cool-off ends one call goes as the probe while the others wait for it; its
    answer closes the breaker and calls flow again."""
    setup.front.outage = nginx_502()
    for _ in range(3):
        await outcome(setup.client.get_me())
    setup.front.outage = None
    setup.clock.advance(29)
    early = await outcome(setup.client.get_me())
    setup.clock.advance(1)
    setup.front.hold = asyncio.Event()
    probe = asyncio.create_task(setup.client.get_me())
    await setup.received.wait_for(4)
    behind_probe = await outcome(setup.client.get_webhook_info())
    open_while_probing = setup.gauge()
    setup.front.hold.set()
    identity = await probe
    after = await outcome(setup.client.get_webhook_info())
    assert (
        early,
        behind_probe,
        open_while_probing,
        identity.username,
        after,
        setup.gauge(),
        setup.reached(),
    ) == (
        circuit_open(setup.bot.id, "getMe", seconds=1),
        f"TelegramCircuitOpen: getWebhookInfo: circuit half-open for bot {setup.bot.id}: "
        "a probe is in flight; ask again in 5s",
        1.0,
        "breaker_bot",
        "ok",
        0.0,
        ["getMe"] * 4 + ["getWebhookInfo"],
    )


async def test_a_failed_probe_doubles_the_cool_off(setup: Setup) -> None:
    """A probe that fails re-opens the breaker for twice as long; the next probe then closes it."""
    setup.front.outage = json_502()
    for _ in range(3):
        await outcome(setup.client.get_me())
    setup.clock.advance(30)
    failed_probe = await outcome(setup.client.get_me())
    right_after = await outcome(setup.client.get_me())
    setup.clock.advance(59)
    still_open = await outcome(setup.client.get_me())
    setup.clock.advance(1)
    setup.front.outage = None
    recovered = await outcome(setup.client.get_me())
    assert (failed_probe, right_after, still_open, recovered, setup.reached()) == (
        "TelegramUnavailable: getMe: Bad Gateway",
        circuit_open(setup.bot.id, "getMe", failures=4, seconds=60),
        circuit_open(setup.bot.id, "getMe", failures=4, seconds=1),
        "ok",
        ["getMe"] * 5,
    )


async def test_a_cancelled_probe_lets_the_next_call_probe(setup: Setup) -> None:
    """A probe cancelled before its answer does not keep the breaker half-open: the next call
    goes as the probe at once."""
    setup.front.outage = nginx_502()
    for _ in range(3):
        await outcome(setup.client.get_me())
    setup.front.outage = None
    setup.clock.advance(30)
    setup.front.hold = asyncio.Event()
    probe = asyncio.create_task(setup.client.get_me())
    await setup.received.wait_for(4)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    setup.front.hold.set()
    setup.front.hold = None
    assert (await outcome(setup.client.get_me()), setup.reached()) == ("ok", ["getMe"] * 5)


async def _revoked(s: Setup) -> Callable[[], Awaitable[object]]:
    s.emulator.emulator.revoke(s.bot.id)
    return s.client.get_me


async def _unknown_chat(s: Setup) -> Callable[[], Awaitable[object]]:
    return lambda: s.client.send_message(chat_id=999, text="hello")


async def _blocked(s: Setup) -> Callable[[], Awaitable[object]]:
    s.emulator.emulator.send_message(s.bot.id, USER, None, "/start")
    s.emulator.emulator.block_bot(USER_ID, s.bot.id)
    return lambda: s.client.send_message(chat_id=USER_ID, text="hello")


async def _webhook_active(s: Setup) -> Callable[[], Awaitable[object]]:
    s.emulator.emulator.set_webhook(s.bot.id, "https://relay.example.com/telegram/1")
    return lambda: s.client.get_updates(offset=None, timeout=0, limit=100, allowed_updates=[])


async def _flood_controlled(s: Setup) -> Callable[[], Awaitable[object]]:
    s.emulator.emulator.send_message(s.bot.id, USER, None, "/start")
    s.emulator.emulator.set_flood_control(limits=Limits(per_chat=Limit(count=1, window=60.0)))
    await s.client.send_message(chat_id=USER_ID, text="the one the limit allows")
    s.received.deliveries.clear()
    return lambda: s.client.send_message(chat_id=USER_ID, text="hello")


@pytest.mark.parametrize(
    ("arrange", "error"),
    [
        pytest.param(_revoked, "TelegramUnauthorized", id="401"),
        pytest.param(_unknown_chat, "TelegramBadRequest", id="400"),
        pytest.param(_blocked, "TelegramForbidden", id="403"),
        pytest.param(_webhook_active, "TelegramConflict", id="409"),
        pytest.param(_flood_controlled, "TelegramRetryAfter", id="429"),
    ],
)
async def test_answers_never_open_the_breaker(
    setup: Setup, arrange: Callable[[Setup], Awaitable[Callable[[], Awaitable[object]]]], error: str
) -> None:
    """4xx and 429 are Telegram answering: however many in a row, every call still goes out."""
    call = await arrange(setup)
    outcomes = [(await outcome(call())).split(":")[0] for _ in range(2 * POLICY.failure_threshold)]
    assert (outcomes, len(setup.reached()), setup.gauge()) == (
        [error] * 6,
        6,
        None,
    )


async def test_an_answer_between_failures_restarts_the_count(setup: Setup) -> None:
    """Only consecutive failures open the breaker: one answer in between starts the count anew."""
    setup.front.outage = nginx_502()
    first = [await outcome(setup.client.get_me()) for _ in range(2)]
    setup.front.outage = None
    between = await outcome(setup.client.get_me())
    setup.front.outage = nginx_502()
    second = [await outcome(setup.client.get_me()) for _ in range(4)]
    failure = "TelegramUnavailable: getMe: the answer was not JSON"
    assert (first, between, second, setup.reached()) == (
        [failure] * 2,
        "ok",
        [failure] * 3 + [circuit_open(setup.bot.id, "getMe")],
        ["getMe"] * 6,
    )


async def test_long_polls_are_counted_but_never_held_back(setup: Setup) -> None:
    """getUpdates failures open the breaker for the bot's other calls, yet getUpdates itself
    still goes out (the poller backs off on its own) and its first answer closes the breaker."""

    def poll() -> Awaitable[object]:
        return setup.client.get_updates(offset=None, timeout=0, limit=100, allowed_updates=[])

    setup.front.outage = nginx_502()
    polls = [await outcome(poll()) for _ in range(4)]
    held_back = await outcome(setup.client.get_me())
    setup.front.outage = None
    answered = await outcome(poll())
    after = await outcome(setup.client.get_me())
    failure = "TelegramUnavailable: getUpdates: the answer was not JSON"
    assert (polls, held_back, answered, after, setup.reached()) == (
        [failure] * 4,
        circuit_open(setup.bot.id, "getMe", failures=4),
        "ok",
        "ok",
        ["getUpdates"] * 5 + ["getMe"],
    )


async def test_each_bot_has_its_own_breaker(setup: Setup) -> None:
    """One bot's open breaker holds back only that bot's calls."""
    other = setup.emulator.emulator.create_bot("other_bot")
    other_client = setup.clients.for_token(other.token)
    setup.front.outage = nginx_502()
    for _ in range(3):
        await outcome(setup.client.get_me())
    setup.front.outage = None
    outcomes = (await outcome(setup.client.get_me()), await outcome(other_client.get_me()))
    assert (outcomes, setup.gauge(), setup.gauge(other.id), len(setup.reached())) == (
        (circuit_open(setup.bot.id, "getMe"), "ok"),
        1.0,
        None,
        4,
    )


async def test_a_new_token_for_the_bot_keeps_its_breaker(setup: Setup) -> None:
    """The breaker belongs to the bot, not the token: a client for a rotated token is held too."""
    setup.front.outage = nginx_502()
    for _ in range(3):
        await outcome(setup.client.get_me())
    setup.front.outage = None
    new_token = setup.emulator.emulator.rotate_token(setup.bot.id)
    setup.clients.forget(setup.bot.token)
    held_back = await outcome(setup.clients.for_token(new_token).get_me())
    assert (held_back, len(setup.reached())) == (circuit_open(setup.bot.id, "getMe"), 3)


async def test_a_429_is_counted_as_a_flood_wait_of_its_method(setup: Setup) -> None:
    """tgrelay_telegram_flood_waits counts Telegram's 429s by method, and nothing else."""
    call = await _flood_controlled(setup)
    for _ in range(2):
        assert (await outcome(call())).startswith("TelegramRetryAfter")
    await outcome(setup.client.get_me())

    def waits(method: str) -> float | None:
        return setup.metrics.registry.get_sample_value(
            "tgrelay_telegram_flood_waits_total", {"method": method}
        )

    assert (waits("sendMessage"), waits("getMe")) == (2.0, None)
