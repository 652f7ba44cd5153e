"""Webhook delivery as Telegram does it: one request in flight per chat, in update order, at
most `max_connections` per bot, retried with backoff until the webhook answers 2xx."""

from __future__ import annotations

import asyncio
import collections
import http
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from tgrelay.testing.emulator import objects, updates
from tgrelay.testing.emulator import state as emulator_state

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name, not a secret


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Delay before the next attempt: doubling from `first_delay` up to `max_delay`."""

    first_delay: float = 0.05
    max_delay: float = 2.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th failed attempt (1-based)."""
        return float(min(self.first_delay * 2 ** (failures - 1), self.max_delay))


def failure_message(response: httpx.Response | None, exc: httpx.HTTPError | None) -> str:
    """getWebhookInfo's last_error_message for a failed push, in Telegram's words."""
    if response is not None:
        phrase = response.reason_phrase or _standard_phrase(response.status_code)
        return f"Wrong response from the webhook: {response.status_code} {phrase}".rstrip()
    if isinstance(exc, httpx.ConnectTimeout):
        return "Connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "Read timeout expired"
    if isinstance(exc, httpx.ConnectError):
        if any(isinstance(cause, socket.gaierror) for cause in _causes(exc)):
            return "Failed to resolve host: Name or service not known"
        return "Connection refused"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "Connection reset by peer"
    return f"Connection error: {type(exc).__name__}"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _standard_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


# Lanes are keyed (0, chat or user id) for ordered updates, (1, seq) for free-standing ones.
LaneKey = tuple[int, int]


@dataclass(kw_only=True)
class _Lane:
    queue: collections.deque[emulator_state.PendingUpdate] = field(
        default_factory=collections.deque
    )
    task: asyncio.Task[None] | None = None


class WebhookPusher:
    """Pushes one bot's pending updates to one webhook configuration until stopped."""

    def __init__(
        self,
        *,
        bot_id: int,
        config: emulator_state.WebhookConfig,
        state: emulator_state.EmulatorState,
        client: httpx.AsyncClient,
        policy: RetryPolicy,
    ) -> None:
        self.bot_id = bot_id
        self.config = config
        self._state = state
        self._client = client
        self._policy = policy
        self._slots = asyncio.Semaphore(config.max_connections)
        self._lanes: dict[LaneKey, _Lane] = {}
        self._last_assigned = 0  # seq of the newest update handed to a lane
        self._stopped = False

    def targets(self, config: emulator_state.WebhookConfig) -> bool:
        """Whether this pusher already delivers the way `config` asks."""
        return (config.url, config.secret_token, config.max_connections) == (
            self.config.url,
            self.config.secret_token,
            self.config.max_connections,
        )

    def kick(self) -> None:
        """Hand newly queued updates to their chat's lane (must run inside the event loop)."""
        if self._stopped:
            return
        for pending in self._state.pending_after(self.bot_id, self._last_assigned):
            self._last_assigned = pending.seq
            key = updates.ordering_key(pending.body)
            lane_key: LaneKey = (0, key) if key is not None else (1, pending.seq)
            lane = self._lanes.get(lane_key)
            if lane is None:
                lane = self._lanes[lane_key] = _Lane()
                lane.task = asyncio.create_task(
                    self._drain(lane_key, lane), name=f"emulator-webhook-{self.bot_id}"
                )
            lane.queue.append(pending)

    def stop(self) -> list[asyncio.Task[None]]:
        """Cancel every delivery; returns the tasks so the owner can await their end."""
        self._stopped = True
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        self._lanes.clear()
        return tasks

    async def _drain(self, key: LaneKey, lane: _Lane) -> None:
        try:
            while lane.queue:
                await self._deliver(lane.queue[0])
                lane.queue.popleft()
        finally:
            if self._lanes.get(key) is lane:
                del self._lanes[key]

    async def _deliver(self, pending: emulator_state.PendingUpdate) -> None:
        failures = 0
        # An update dropped meanwhile (drop_pending_updates) is no longer sent.
        while self._state.is_pending(self.bot_id, pending.seq):
            async with self._slots:
                error = await self._post(pending)
            if error is None:
                self._state.acknowledge(self.bot_id, pending.seq)
                return
            failures += 1
            self._state.record_webhook_error(self.bot_id, error)
            await asyncio.sleep(self._policy.delay(failures))

    async def _post(self, pending: emulator_state.PendingUpdate) -> str | None:
        headers = {"Content-Type": "application/json"}
        if self.config.secret_token:
            headers[SECRET_HEADER] = self.config.secret_token
        try:
            response = await self._client.post(
                self.config.url, content=objects.encode(pending.body), headers=headers
            )
        except httpx.HTTPError as exc:
            return failure_message(None, exc)
        if response.is_success:
            return None
        return failure_message(response, None)
