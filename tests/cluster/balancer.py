"""A round-robin HTTP balancer for the cluster test: what nginx does in deploy/compose.yaml.

Each request goes to the next backend in turn. A backend that refuses the connection (killed,
or not yet listening) is skipped for the other, as nginx's `proxy_next_upstream error` does;
a request cut after it was sent answers 502, and the caller retries (the emulator, like
Telegram, retries an update until it gets a 2xx).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

# Hop-by-hop headers and those httpx sets itself: not passed through.
_DROPPED = frozenset({"host", "content-length", "connection", "transfer-encoding", "keep-alive"})


@dataclass(frozen=True, kw_only=True)
class Answer:
    """A backend's answer, as the balancer passed it on."""

    at: float  # time.monotonic() when it came
    backend: str  # the backend's base URL
    path: str
    status: int


class RoundRobin:
    """An ASGI app forwarding every HTTP request to `backends` in turn."""

    def __init__(self, backends: list[str]) -> None:
        self._backends = backends
        self._turns = itertools.cycle(range(len(backends)))
        self._client = httpx.AsyncClient(timeout=30)
        self.answers: list[Answer] = []

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        first = next(self._turns)
        response: Response = Response(status_code=502)
        for offset in range(len(self._backends)):
            backend = self._backends[(first + offset) % len(self._backends)]
            try:
                answer = await self._client.request(
                    request.method, backend + target, content=body, headers=headers
                )
            except httpx.ConnectError:
                continue  # nothing was sent: the next backend may take it
            except httpx.TransportError:
                break  # sent, then cut (the backend died mid-request): 502, the caller retries
            self.answers.append(
                Answer(
                    at=time.monotonic(),
                    backend=backend,
                    path=request.url.path,
                    status=answer.status_code,
                )
            )
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED}
            kept.pop("content-encoding", None)  # httpx has decoded the body
            response = Response(answer.content, status_code=answer.status_code, headers=kept)
            break
        await response(scope, receive, send)
