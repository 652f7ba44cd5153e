"""Outgoing Bot API rate limits as reservations: every send is given its own future slot.

Telegram documents about 30 messages/s per bot, 1 message/s per chat and 20 messages/minute
per group (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this).
Each limit is a GCRA key (state: the theoretical arrival time, TAT) with a burst of one, used
to schedule rather than to refuse: a send gets the earliest instant every key allows and each
key moves one stretched interval past it, so sends on a key are at least that far apart and
any sliding window of `per_seconds` holds at most `count` sends. Contending jobs thus queue at
distinct instants instead of all retrying at the same one. Workers never sleep here: a caller
reschedules its job to its slot. Only the bot's key is reserved ahead: while a chat or group
key is busy past the bot's next slot (a backlog, or a 429's `retry_after` held there) nothing
is reserved and the caller comes back when it frees, so one destination's wait never delays
the bot's other chats.

Telegram counts a send when its request arrives, which lies somewhere between our start and
our reading of the answer; where depends on two busy event loops and the network. So the
window check right before a request (`admit`) counts each earlier send until one window
after the latest instant it can have arrived (`arrived_by`), and a send still in flight as
if it could arrive at any moment: no delay on the way can crowd a window.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from tgrelay.telegram.client import CALL_TIMEOUT_SECONDS

# Past this many keys the in-process limiter forgets keys whose TAT has passed (they constrain
# no slot any more, so forgetting them changes no answer).
MAX_IDLE_KEYS = 100_000
REDIS_TIMEOUT_SECONDS = 2.0
# The latest a send's request can reach Telegram: the client gives up on it then. A send whose
# `finish` never comes (its process died) counts this long, so it cannot count forever.
IN_FLIGHT_SECONDS = float(CALL_TIMEOUT_SECONDS)
# The window check's windows are this fraction longer than Telegram's: our clock (Redis's,
# when shared) and Telegram's may tick at rates up to 500 ppm apart while NTP slews them.
CLOCK_RATE_MARGIN = 0.001
# And this much longer still, whatever their length: `arrived_by` subtracts the least round
# trip a process has seen, and a worker restarted onto starved cores learns that from slow
# first answers, so it dates earlier sends' arrivals early. The cluster test (tests/cluster/)
# caught one send 0.1 ms inside a per-bot window that way; with a 5 ms margin, CI then drew
# one 1.7 ms inside (dated ≥ 7.7 ms early), and a run beside heavy benchmarks one 15 ms
# inside. 20 ms costs a bot sending at its 30/s limit ~2 % of that rate.
WINDOW_EDGE_SECONDS = 0.02
ROUND_TRIPS_TRUSTED = 8  # see RoundTrips


@dataclass(frozen=True, kw_only=True)
class Rate:
    """At most `count` sends in any window of `per_seconds`."""

    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or not self.per_seconds > 0:
            raise ValueError("a rate needs count >= 1 and per_seconds > 0")


@dataclass(frozen=True, kw_only=True)
class Limits:
    """The limits that apply to every send; the defaults are Telegram's documented ones."""

    per_bot: Rate = Rate(count=30, per_seconds=1)
    per_chat: Rate = Rate(count=1, per_seconds=1)
    per_group: Rate = Rate(count=20, per_seconds=60)  # in addition to per_chat, for chat_id < 0
    # Reservations are spaced by intervals stretched by this fraction, because a send that runs
    # a little late compresses the gap to the next reserved one: 4 % of the 1 s chat interval
    # is 40 ms of slack, within which lateness costs nothing (the window check then delays the
    # start, so lateness beyond it costs rate, never a 429). Capped so the achieved rate stays
    # within 5 % of each limit.
    safety: float = 0.04

    def __post_init__(self) -> None:
        if not 0 <= self.safety <= 0.05:
            raise ValueError("safety is a fraction in [0, 0.05]")

    def interval(self, rate: Rate) -> float:
        """Seconds between two sends on one key: the rate's spacing, stretched by `safety`."""
        return rate.per_seconds / rate.count * (1 + self.safety)


@dataclass(frozen=True, kw_only=True)
class Slot:
    """The answer for one send: a reserved instant, or how long its destination is busy."""

    wait_seconds: float  # from now until the slot (or until the destination frees)
    # True: send at the slot without asking again. False: nothing reserved, ask after the wait.
    reserved: bool
    new_states: Mapping[str, float] = field(default_factory=dict)  # TATs to store, if reserved


def keys_for(bot_id: int, chat_id: int, limits: Limits) -> dict[str, float]:
    """The GCRA keys one send touches, each with its interval in seconds.

    `{bot_id}` is a Redis Cluster hash tag: all keys of one bot live in one slot, so one script
    may touch them together.
    """
    keys = {
        f"{{{bot_id}}}:bot": limits.interval(limits.per_bot),
        f"{{{bot_id}}}:chat:{chat_id}": limits.interval(limits.per_chat),
    }
    if chat_id < 0:  # groups, supergroups and channels have negative ids
        keys[f"{{{bot_id}}}:group:{chat_id}"] = limits.interval(limits.per_group)
    return keys


def chat_key(bot_id: int, chat_id: int) -> str:
    """The key that `hold_chat` blocks after a 429 in that chat."""
    return f"{{{bot_id}}}:chat:{chat_id}"


def schedule(
    states: Mapping[str, float | None], intervals: Mapping[str, float], now: float
) -> Slot:
    """Scheduling GCRA with a burst of one: the first key (the bot's, shared by all its chats)
    is reserved ahead; the others (the destination's) must be free by the slot it gives.

    `states` holds each key's TAT (None when unknown). The slot is the later of now and the
    shared key's TAT. A destination key still busy then: no reservation, wait until it frees
    (a slot past the shared TAT would leave a gap no other chat could use). Otherwise every
    key's TAT moves to the slot plus its interval. A destination that frees while the bot's
    backlog drains is reserved at once, not asked again only to find that backlog longer.
    """
    shared, *destination = intervals
    shared_tat = states.get(shared)
    slot = now if shared_tat is None else max(now, shared_tat)
    busy_until = max([now, *(tat for key in destination if (tat := states.get(key)) is not None)])
    if busy_until > slot:
        return Slot(wait_seconds=busy_until - now, reserved=False)
    return Slot(
        wait_seconds=slot - now,
        reserved=True,
        new_states={key: slot + interval for key, interval in intervals.items()},
    )


def spacings_for(bot_id: int, chat_id: int, limits: Limits) -> dict[str, float]:
    """The least time, per key of `keys_for`, from a send that started late to the next one.

    Without the safety stretch where a key's window holds several sends (bot, group): the
    stretch is slack for runs a little late, and `admit` holds the real window. A chat's
    window holds one send, so its spacing is the stretched window itself.
    """
    spacings = keys_for(bot_id, chat_id, replace(limits, safety=0))
    spacings[chat_key(bot_id, chat_id)] = limits.interval(limits.per_chat)
    return spacings


def confirmed(
    states: Mapping[str, float | None], spacings: Mapping[str, float], now: float
) -> dict[str, float]:
    """TATs after a send on a reserved slot actually starts at `now` (a late run): the next
    send on each key comes at least its spacing (`spacings_for`) after this one.

    A run late by less than the stretch leaves its group's and its bot's next slots where
    they were. Were they pushed back by every late start, the lateness would add up over a
    group's sends, and on a bot whose groups' slots lie one bot interval apart a late send
    would push every group behind it (on bench/alerts.py, 20-30 ms per 3 s group interval).
    """
    return {
        key: now + spacing if (tat := states.get(key)) is None else max(tat, now + spacing)
        for key, spacing in spacings.items()
    }


def windows_for(bot_id: int, chat_id: int, limits: Limits) -> dict[str, tuple[int, float]]:
    """The sliding windows a send's start must fit, per key of `keys_for`: at most `count`
    sends in any window of `per_seconds` (plus CLOCK_RATE_MARGIN and WINDOW_EDGE_SECONDS; no
    safety stretch, as `admit` bounds arrivals instead of guessing them)."""
    rates = [limits.per_bot, limits.per_chat, limits.per_group]
    return {
        key: (rate.count, rate.per_seconds * (1 + CLOCK_RATE_MARGIN) + WINDOW_EDGE_SECONDS)
        for key, rate in zip(keys_for(bot_id, chat_id, limits), rates, strict=False)
    }


def arrived_by(answered_at: float, round_trip: float, fixed: float) -> float:
    """The latest instant a send answered at `answered_at`, `round_trip` after its start, can
    have reached Telegram.

    A round trip is the path's fixed time, out and back (`fixed`, see `RoundTrips`), plus
    delays that are never negative. The answer came at least the fixed time back after the
    arrival, and the next send arrives at least the fixed time out after its start, so the
    whole fixed time comes off: `admit` then spaces only the delays, however long the path
    (100 ms to Telegram costs no rate). Never before the send's start.
    """
    return answered_at - min(round_trip, fixed)


@dataclass
class RoundTrips:
    """The round trips of one process's answered sends, for `arrived_by`'s fixed time.

    Their least is trusted only after ROUND_TRIPS_TRUSTED of them, so that a first few slowed
    by a busy start-up cannot pass for the path. It is never forgotten: a path grown longer
    since only makes `arrived_by` late, never early.
    """

    least: float = math.inf
    seen: int = 0

    def add(self, seconds: float) -> None:
        self.least = min(self.least, seconds)
        self.seen += 1

    def fixed(self) -> float:
        """Seconds of every round trip that no delay made: 0.0 until trusted."""
        return self.least if self.seen >= ROUND_TRIPS_TRUSTED else 0.0


def admit(
    arrivals: Mapping[str, Iterable[float]],
    windows: Mapping[str, tuple[int, float]],
    now: float,
) -> float:
    """Seconds until a send may start under every key's window (0.0: it may start now).

    `arrivals` holds, per key, each recent send's latest possible arrival at Telegram: from
    its answer (`arrived_by`), or a bound in the future while it is in flight. A send not counted
    here reached Telegram a window or more before this one can, so Telegram cannot count it
    either, however late the requests travel: runs late together (a busy worker) or a request
    held up on the way cannot crowd a window. A send in flight may arrive now, so it is waited
    for as if it just had.
    """
    wait = 0.0
    for key, (count, window) in windows.items():
        recent = sorted(t for t in arrivals.get(key, ()) if t > now - window)
        if len(recent) >= count:
            wait = max(wait, min(recent[len(recent) - count], now) + window - now)
    return wait


def held(tat: float | None, now: float, seconds: float) -> float:
    """A key's TAT after Telegram asked us to wait `seconds` there: never earlier than before."""
    until = now + max(seconds, 0.0)
    return until if tat is None else max(tat, until)


class RateLimiter(Protocol):
    """Where a sender reserves its slot before each Bot API send."""

    async def reserve(self, bot_id: int, chat_id: int) -> Slot:
        """Reserve the earliest slot for a send, or say how long its chat or group is busy.

        `reserved`: send no earlier than `wait_seconds` from now (the caller reschedules its job
        there) and without asking again. Otherwise nothing is reserved: ask again after the wait.
        """
        ...

    async def start(self, bot_id: int, chat_id: int, send_id: str) -> float:
        """Right before the request: 0.0 means the send starts now (recorded as in flight under
        `send_id`, and the next slots are spaced from now). Otherwise, seconds until the recent
        sends allow it, and nothing is recorded."""
        ...

    async def finish(self, bot_id: int, chat_id: int, send_id: str, *, answered: bool) -> None:
        """Right after the started send's request ended, whatever its outcome. `answered`:
        Telegram answered it (success or error), so it arrived by `arrived_by`; otherwise
        (the network failed) it reached Telegram by now, if at all."""
        ...

    async def hold_chat(self, bot_id: int, chat_id: int, seconds: float) -> None:
        """After a 429 with `retry_after`: block this chat for `seconds`, and no other chat."""
        ...

    async def close(self) -> None:
        """Release what the limiter holds (a Redis connection pool)."""
        ...


class InProcessRateLimiter:
    """Limits for a single process: TATs in a dict, read from a monotonic clock."""

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_idle_keys: int = MAX_IDLE_KEYS,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._tats: dict[str, float] = {}
        # Per key, recent sends by id: when each arrived at the latest (see `admit`).
        self._arrived_by: dict[str, dict[str, float]] = {}
        self._round_trips = RoundTrips()
        self._max_idle_keys = max_idle_keys
        self._sweep_above = max_idle_keys

    async def reserve(self, bot_id: int, chat_id: int) -> Slot:
        # No await between read and write: the event loop makes this read-and-set atomic.
        now = self._clock()
        intervals = keys_for(bot_id, chat_id, self._limits)
        slot = schedule({key: self._tats.get(key) for key in intervals}, intervals, now)
        self._tats.update(slot.new_states)
        self._forget_idle(now)
        return slot

    async def start(self, bot_id: int, chat_id: int, send_id: str) -> float:
        now = self._clock()
        windows = windows_for(bot_id, chat_id, self._limits)
        logs = {key: self._arrived_by.get(key, {}) for key in windows}
        wait = admit({key: log.values() for key, log in logs.items()}, windows, now)
        if wait > 0:
            return wait
        for key, (_, window) in windows.items():
            self._arrived_by[key] = {
                sent: at for sent, at in logs[key].items() if at > now - window
            } | {send_id: now + IN_FLIGHT_SECONDS}
        spacings = spacings_for(bot_id, chat_id, self._limits)
        self._tats.update(confirmed({k: self._tats.get(k) for k in spacings}, spacings, now))
        self._forget_idle(now)
        return 0.0

    async def finish(self, bot_id: int, chat_id: int, send_id: str, *, answered: bool) -> None:
        now = self._clock()
        logs = [self._arrived_by.get(key, {}) for key in keys_for(bot_id, chat_id, self._limits)]
        logs = [log for log in logs if send_id in log]
        if not logs:
            return
        arrived = now
        if answered:
            round_trip = now - (logs[0][send_id] - IN_FLIGHT_SECONDS)
            arrived = arrived_by(now, round_trip, self._round_trips.fixed())
            self._round_trips.add(round_trip)
        for log in logs:
            log[send_id] = arrived

    async def hold_chat(self, bot_id: int, chat_id: int, seconds: float) -> None:
        key = chat_key(bot_id, chat_id)
        now = self._clock()
        self._tats[key] = held(self._tats.get(key), now, seconds)
        self._forget_idle(now)

    async def close(self) -> None:
        self._tats.clear()

    def __len__(self) -> int:
        """How many keys are remembered (for tests of the memory bound)."""
        return len(self._tats)

    def _forget_idle(self, now: float) -> None:
        if len(self._tats) <= self._sweep_above:
            return
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        horizon = now - max(window for _, window in windows_for(0, -1, self._limits).values())
        self._arrived_by = {
            key: log for key, log in self._arrived_by.items() if max(log.values()) > horizon
        }
        # Keys still busy stay; sweep again only when the dict has doubled, so the cost of a
        # sweep is spread over the inserts that led to it.
        self._sweep_above = max(self._max_idle_keys, 2 * len(self._tats))


def rate_limiter(redis_url: str | None, limits: Limits) -> RateLimiter:
    """The shared Redis limiter when a URL is configured, else one for this process only."""
    if redis_url is None:
        return InProcessRateLimiter(limits)
    # Imported only here: redis-py costs a third of a second of CPU to load, for nothing
    # in a single-node deployment.
    from tgrelay.telegram import ratelimit_redis

    return ratelimit_redis.connect(redis_url, limits)
