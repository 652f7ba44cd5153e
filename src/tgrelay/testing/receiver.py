"""A webhook receiver for tests: records every request and answers as the test says.

Serve it with `receiving()` (a loopback port in the current event loop) and point a webhook
at `url`; the emulator's pushes and tgrelay's outgoing events both land here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tgrelay.testing import serving


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One request as the receiver got it."""

    method: str
    path: str
    # Lower-cased names; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


# Decides the answer to a delivery: a status code or a whole response; may take its time.
Responder = Callable[[Delivery], Awaitable[int | Response]]


async def always_ok(delivery: Delivery) -> int:
    return 200


class Receiver:
    """An ASGI endpoint that records deliveries and tracks how many are in flight."""

    def __init__(self, respond: Responder = always_ok) -> None:
        self.respond = respond
        self.deliveries: list[Delivery] = []
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests ever handled at once
        self._changed = asyncio.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan and websockets: nothing to do
        request = Request(scope, receive)
        delivery = Delivery(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        async with self._changed:
            self.deliveries.append(delivery)
            self._changed.notify_all()
        try:
            answer = await self.respond(delivery)
        finally:
            self.in_flight -= 1
        response = answer if isinstance(answer, Response) else Response(status_code=answer)
        await response(scope, receive, send)

    async def wait_for(self, count: int, *, timeout: float = 5.0) -> list[Delivery]:
        """The first `count` deliveries, once they have arrived."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.deliveries) >= count)
            return self.deliveries[:count]


@dataclass(frozen=True, kw_only=True)
class RunningReceiver:
    receiver: Receiver
    base_url: str

    @property
    def url(self) -> str:
        """Where to point a webhook: `{base_url}/hook` (any path is received)."""
        return f"{self.base_url}/hook"


@contextlib.asynccontextmanager
async def receiving(
    respond: Responder = always_ok, *, host: str = "127.0.0.1"
) -> AsyncIterator[RunningReceiver]:
    """A `Receiver` served on a free loopback port for the duration of the block."""
    receiver = Receiver(respond)
    async with serving.serving(receiver, host=host, lifespan="off") as served:
        yield RunningReceiver(receiver=receiver, base_url=served.base_url)
