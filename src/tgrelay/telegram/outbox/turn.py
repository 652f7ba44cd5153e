"""A send job's turn with the rate limiter, carried in its payload between runs.

Jobs do not sleep through a limit: a send that the limiter defers is rescheduled, so other
chats keep flowing; only the last SEND_LEAD_SECONDS before a slot are waited in the job.
The turn also records the send as attempted before its request (DESIGN promise 2): in the
payload of the reschedule that carries its slot (no transaction of its own), or else with
`save` right before the slot's last wait.

A limiter that cannot be asked (its Redis unreachable) gives no turn: the send is
rescheduled, its attempt unspent, and asks again until it can (fail closed), however long
the outage; it never goes unlimited.

Its clock (unix seconds) and its sleep are parameters, so tests drive time themselves.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import structlog

from tgrelay import errors
from tgrelay.queue import retry
from tgrelay.telegram import ratelimit

# Payload key of a send slot reserved on an earlier run (unix seconds on the worker's clock).
SLOT_AT = "slot_at"
# Payload key: the job attempt whose run recorded the send as about to go. A run that finds
# another attempt's record knows that run may have sent without recording the answer.
ATTEMPTED = "attempted"
# Payload key: when the send first asked for a turn (unix seconds), for the turn-wait metric.
ASKED_AT = "asked_at"
# A rate-limited send comes back this long before its slot and waits the rest in the job: the
# longest a worker slot is held waiting, and what the claim and reads may take without
# making the send late.
SEND_LEAD_SECONDS = 0.05
# uvloop's timers count whole milliseconds and fire up to one early (a quarter of short sleeps
# did here): a job that slept exactly until its chat freed found it still busy, and went
# round the queue again for nothing. Its sleeps here run this much longer.
TIMER_SLACK_SECONDS = 0.001
# How soon a send asks again while the limiter cannot be reached. redis-py itself retries a
# failed command for a few seconds (10 times, backoff up to 1 s) before the limiter gives up.
LIMITER_DOWN_RETRY_SECONDS = 1.0

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
# Writes the payload to the job's row (its attempt record), in a transaction of its own.
Save = Callable[[Mapping[str, Any]], Awaitable[None]]


class Turn:
    """A send's place in the rate limiter's queue.

    The limiter reserves the job a slot (so jobs waiting on one bot never stampede); the job is
    rescheduled to that instant with the slot in its payload, and then sends without asking
    again. The worker never runs a job before its run_at, so a carried slot is due. When the
    chat or group itself is busy nothing is reserved, and the job simply asks again later.
    """

    def __init__(
        self,
        *,
        limiter: ratelimit.RateLimiter,
        payload: Mapping[str, Any],
        attempt: int,
        clock: Clock,
        sleep: Sleep,
        save: Save,
        waited: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._limiter = limiter
        self._payload = dict(payload)
        self._attempt = attempt
        self._clock = clock
        self._sleep = sleep
        self._save = save
        self._waited = waited  # told how long the send waited for its turn, once it starts

    def attempted_unrecorded(self) -> bool:
        """Whether an earlier run recorded this send as about to go and then ended without
        an outcome (a crash, or a network error with the request maybe through). Forgets that
        record, so a run rescheduled before its own record does not count it again."""
        recorded = self._payload.get(ATTEMPTED)
        if recorded is None or recorded == self._attempt:
            return False
        del self._payload[ATTEMPTED]
        return True

    def marked(self) -> bool:
        """Whether this attempt already recorded the send (on a run that was rescheduled,
        which gives the attempt back)."""
        return self._payload.get(ATTEMPTED) == self._attempt

    async def wait_for_slot(self, bot_id: int, chat_id: int) -> None:
        """Return when this send may go now; otherwise raise Reschedule to just before its slot.

        The job comes back SEND_LEAD_SECONDS early and waits the rest here, so its claim and
        reads happen before the slot instead of after it: with one send per chat interval,
        every late start pushes all of that chat's later sends back.

        The attempt is recorded before this returns, never between the slot and the request (a
        late send crowds the sends reserved after it).
        """
        self._payload.setdefault(ASKED_AT, self._clock())
        slot_at = self._payload.pop(SLOT_AT, None)
        if isinstance(slot_at, int | float):
            early = slot_at - self._clock()
            if early > 2 * SEND_LEAD_SECONDS:  # another process's clock ran ahead: come back
                raise retry.Reschedule(
                    early - SEND_LEAD_SECONDS,
                    "Telegram send limits",
                    payload={**self._payload, SLOT_AT: slot_at},
                )
            # A slot already past (a busy worker, a retry after an error) is used now, not
            # reserved anew: the chat's and group's keys already count it, so a new reservation
            # would wait a whole interval behind this job's own slot. `sending` still checks
            # the start against the sends that really started.
            await self._ready_at(slot_at)
            return
        for _ in range(2):  # once more after a short wait for the chat or group to free
            with self._failing_closed(bot_id, chat_id):
                slot = await self._limiter.reserve(bot_id, chat_id)
            if slot.wait_seconds > SEND_LEAD_SECONDS:
                break
            if slot.reserved or slot.wait_seconds <= 0:
                await self._ready_at(self._clock() + slot.wait_seconds)
                return
            await self._sleep_past(slot.wait_seconds)
        if not slot.reserved:
            raise retry.Reschedule(
                slot.wait_seconds - SEND_LEAD_SECONDS,
                "the chat or group is busy",
                payload=dict(self._payload),
            )
        # The reschedule's payload is the attempt's record: it costs no transaction of its own.
        self._payload[ATTEMPTED] = self._attempt
        raise retry.Reschedule(
            slot.wait_seconds - SEND_LEAD_SECONDS,
            "Telegram send limits",
            payload={**self._payload, SLOT_AT: self._clock() + slot.wait_seconds},
        )

    async def _ready_at(self, slot_at: float) -> None:
        """Record the attempt (unless an earlier run of this attempt did), then return once
        the slot (unix seconds) has passed: the record's time is the wait's."""
        if not self.marked():
            self._payload[ATTEMPTED] = self._attempt
            await self._save(dict(self._payload))
        await self._sleep_past(slot_at - self._clock())

    @contextlib.asynccontextmanager
    async def sending(self, bot_id: int, chat_id: int) -> AsyncIterator[None]:
        """Wrap the Bot API request: its start is checked against the sends that really went
        (runs late together must not crowd a window) and recorded, and its end tells the
        limiter when it reached Telegram at the latest (sooner when Telegram answered it).

        A start refused here keeps its reservation: the job waits a short refusal out, and
        comes back for a long one with its slot moved, as reserving anew would find the chat
        or group busy with this very slot (on bench/alerts.py, a 3 s group interval lost).
        """
        send_id = secrets.token_hex(8)
        while True:
            with self._failing_closed(bot_id, chat_id):
                wait = await self._limiter.start(bot_id, chat_id, send_id)
            if wait <= 0:
                break
            if wait > SEND_LEAD_SECONDS:
                raise retry.Reschedule(
                    wait - SEND_LEAD_SECONDS,
                    "recent sends fill the window",
                    payload={**self._payload, SLOT_AT: self._clock() + wait},
                )
            await self._sleep_past(wait)
        asked_at = self._payload.get(ASKED_AT)
        if isinstance(asked_at, int | float):
            self._waited(max(self._clock() - asked_at, 0.0))
        answered = False
        try:
            yield
            answered = True
        except errors.TelegramError as exc:
            # Telegram's own refusals were answered; an unreachable Telegram was not.
            answered = not isinstance(exc, errors.TelegramUnavailable)
            raise
        finally:
            await self._limiter.finish(bot_id, chat_id, send_id, answered=answered)

    @contextlib.contextmanager
    def _failing_closed(self, bot_id: int, chat_id: int) -> Iterator[None]:
        """Around a call to the limiter: unreachable, it reschedules the send to reserve anew
        (a restarted Redis forgot every slot); the payload keeps this attempt's record, and
        the reschedule gives the attempt back, so the next run counts no possible duplicate."""
        try:
            yield
        except errors.StorageUnavailable as exc:
            log.warning("ratelimit.unavailable", bot_id=bot_id, chat_id=chat_id, error=str(exc))
            raise retry.Reschedule(
                LIMITER_DOWN_RETRY_SECONDS,
                "the rate limiter is unreachable",
                payload=self.forget_slot(),
            ) from None

    def forget_slot(self) -> dict[str, Any]:
        """The payload for a run that must reserve again (after a 429 or a migration)."""
        self._payload.pop(SLOT_AT, None)
        return dict(self._payload)

    async def _sleep_past(self, seconds: float) -> None:
        """Return once `seconds` have surely passed (at once when there is nothing to wait)."""
        if seconds > 0:
            await self._sleep(seconds + TIMER_SLACK_SECONDS)
