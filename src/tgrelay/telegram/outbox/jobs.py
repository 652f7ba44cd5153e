"""Sends as jobs: a domain enqueues in its own transaction; the send job delivers after commit.

One job per request, ordered per bot and chat (or by a key the domain gives, e.g. one
connection's alerts), never holding a transaction while it waits on Telegram. How it ends:

- sent: the recipient's `finished` gets Sent in the transaction that completes the job;
- failed for good (an error the table says so of, retries run out, or the recipient's
  `ready` refused it): the job is dead, and `finished` gets Failed in the transaction that
  marks it so; for a chat gone, the chat-fate hooks run first in the same transaction;
- not yet (429, a migration, an open breaker, a later slot): rescheduled, no attempt spent;
  a migration's hooks run in the rescheduling transaction.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import errors
from tgrelay.db import engine as db_engine
from tgrelay.queue import models as queue_models
from tgrelay.queue import retry, worker
from tgrelay.queue import store as job_store
from tgrelay.runtime import Runtime
from tgrelay.telegram.outbox import actions, calls, messages, outcomes, turn
from tgrelay.telegram.outbox.actions import Action
from tgrelay.telegram.outbox.registry import Outbox, Recipient, Result, UnknownRecipient

log = structlog.get_logger(__name__)

SEND = "telegram_send"
# Payload keys beside the turn's (turn.SLOT_AT, turn.ATTEMPTED, turn.ASKED_AT).
REQUEST = "request"
RESULT = "result"


def chat_key(bot_id: int, chat_id: int) -> str:
    """The default ordering key: one bot's sends to one chat go out in the order asked."""
    return f"send:{bot_id}:{chat_id}"


async def enqueue(
    conn: AsyncConnection,
    rt: Runtime,
    request: messages.Request,
    *,
    result: Result | None = None,
    ordering_key: str | None = None,
) -> None:
    """Queue a send in the caller's transaction; it goes once that commits.

    `ordering_key` replaces the per-chat order (e.g. a connection's alerts and its
    confirmation share one, so the topic the confirmation creates exists before the alerts).
    """
    chat_id = messages.chat_of(request)
    payload: dict[str, Any] = {REQUEST: messages.dump(request)}
    if result is not None:
        payload[RESULT] = {"handler": result.handler, "reference": dict(result.reference)}
    job = queue_models.NewJob(
        kind=SEND,
        payload=payload,
        ordering_key=ordering_key
        or (None if chat_id is None else chat_key(request.bot_id, chat_id)),
    )
    # Sends are often asked for inside another queue's job (a reply to an update): its
    # worker must be woken once they commit, or they wait for its next look.
    db_engine.after_commit(conn, functools.partial(rt.notify_queue, job.queue))
    await job_store.enqueue(
        conn, [job], now=rt.clock(), default_max_attempts=rt.settings.job_max_attempts
    )


def register(registry: worker.Registry, rt: Runtime, outbox: Outbox) -> None:
    """Register the send job; it holds no transaction while it waits on Telegram."""

    async def send(job: queue_models.Job) -> queue_models.Finish | None:
        return await _Send(rt, outbox, job).run()

    registry.register(SEND, send, transactional=False)


class _Send:
    """One run of a send job."""

    def __init__(self, rt: Runtime, outbox: Outbox, job: queue_models.Job) -> None:
        self._rt = rt
        self._outbox = outbox
        self._job = job
        try:
            self._request = messages.load(job.payload[REQUEST])
            found = job.payload.get(RESULT)
            self._result = (
                None
                if found is None
                else Result(handler=str(found["handler"]), reference=dict(found["reference"]))
            )
            self._recipient = outbox.recipient_of(self._result)
        except (KeyError, TypeError, ValueError, ValidationError, UnknownRecipient) as exc:
            raise retry.PermanentFailure(f"malformed {SEND} payload: {exc}") from None
        self._turn = turn.Turn(
            limiter=rt.rate_limiter,
            payload=job.payload,
            attempt=job.attempts,
            clock=lambda: rt.clock().timestamp(),
            sleep=asyncio.sleep,
            save=self._save,
            waited=rt.metrics.telegram_turn_wait.observe,
        )

    async def run(self) -> queue_models.Finish | None:
        if self._turn.attempted_unrecorded():
            # An earlier run handed this send to Telegram and stopped before its outcome. The log
            # line outlives a process killed later; the metric counts since this one started.
            self._rt.metrics.possible_duplicate_sends.inc()
            log.warning(
                "telegram.possible_duplicate_send",
                job_id=self._job.id,
                method=self._request.method,
                chat_id=messages.chat_of(self._request),
            )
        reference = self._result.reference if self._result is not None else {}
        async with self._rt.db.engine.connect() as conn:
            ready: outcomes.Readiness = outcomes.Go()
            if self._recipient is not None and self._recipient.ready is not None:
                ready = await self._recipient.ready(conn, reference)
            token = None
            if isinstance(ready, outcomes.Go):
                try:
                    token = await self._outbox.token_of(conn, self._request.bot_id)
                except errors.NotFound as exc:
                    ready = outcomes.Refuse(reason=exc.message)
        if isinstance(ready, outcomes.Drop):
            return None
        if isinstance(ready, outcomes.Refuse) or token is None:
            reason = ready.reason if isinstance(ready, outcomes.Refuse) else "no token"
            raise self._failed(Action.FAIL, reason)
        request = self._request if ready.request is None else ready.request
        if ready.destination is not None and not isinstance(request, messages.AnswerCallback):
            request = messages.aimed_at(request, ready.destination)
        client = self._rt.telegram.for_token(token)
        chat_id = messages.chat_of(request)
        try:
            if chat_id is None:  # a callback answer: no chat, no message, no limit
                sent = await calls.perform(client, request)
            else:
                await self._turn.wait_for_slot(request.bot_id, chat_id)
                async with self._turn.sending(request.bot_id, chat_id):
                    sent = await calls.perform(client, request)
        except errors.TelegramError as exc:
            return await self._refused(request, exc)
        return self._finished(sent)

    async def _hold_chat(self, bot_id: int, chat_id: int, seconds: float) -> None:
        """Hold the chat's other sends for a 429's retry_after, if the limiter can be told.

        Unreachable, it is not: this job still waits retry_after (its reschedule below), and
        the chat's other sends wait for the limiter to come back (they fail closed). Raising
        instead would fail the job, spend its attempt and retry it after the queue's backoff,
        which may come before retry_after.
        """
        try:
            await self._rt.rate_limiter.hold_chat(bot_id, chat_id, seconds)
        except errors.StorageUnavailable as exc:
            log.warning(
                "ratelimit.hold_lost",
                bot_id=bot_id,
                chat_id=chat_id,
                retry_after=seconds,
                error=str(exc),
            )

    async def _refused(
        self, request: messages.Request, exc: errors.TelegramError
    ) -> queue_models.Finish | None:
        """Carry out the table's action for Telegram's refusal (or raise what does)."""
        decision = actions.decide(exc)
        bot_id = request.bot_id
        chat_id = messages.chat_of(request)
        match decision.action:
            case Action.SUCCEED:
                message_id = getattr(request, "message_id", None)
                return self._finished(outcomes.Sent(method=request.method, message_id=message_id))
            case Action.WAIT:
                assert isinstance(exc, errors.TelegramRetryAfter)
                # Topic management has limits of its own (a few topics a minute): a 429 there
                # must not hold the messages going into the forum's other topics.
                if chat_id is not None and not isinstance(request, messages.TopicRequest):
                    await self._hold_chat(bot_id, chat_id, exc.retry_after)
                log.warning(
                    "telegram.flood_controlled",
                    bot_id=bot_id,
                    chat_id=chat_id,
                    method=request.method,
                    retry_after=exc.retry_after,
                )
                raise retry.Reschedule(
                    exc.retry_after,
                    "Telegram flood control (429)",
                    payload=self._turn.forget_slot(),
                ) from None
            case Action.MIGRATE:
                assert isinstance(exc, errors.TelegramBadRequest)
                assert exc.migrate_to_chat_id is not None
                assert chat_id is not None
                assert not isinstance(request, messages.AnswerCallback)
                new_chat_id = exc.migrate_to_chat_id
                payload = self._turn.forget_slot()
                payload[REQUEST] = messages.dump(messages.moved_to(request, new_chat_id))

                async def follow(conn: AsyncConnection) -> None:
                    await self._outbox.migrated(
                        conn, bot_id=bot_id, old_chat_id=chat_id, new_chat_id=new_chat_id
                    )

                raise retry.Reschedule(
                    0, "the group became a supergroup", payload=payload, record=follow
                ) from None
            case Action.BREAKER:
                assert isinstance(exc, errors.TelegramCircuitOpen)
                # The request never left: try again when a probe may go, no attempt spent.
                raise retry.Reschedule(
                    exc.retry_after,
                    f"Telegram unreachable (circuit open): {exc.message}",
                    payload=self._turn.forget_slot(),
                ) from None
            case Action.RETRY:
                if self._job.attempts < self._job.max_attempts:
                    raise exc  # the worker's backoff; the next run counts a possible duplicate
                raise self._failed(decision.action, decision.reason) from None
            case Action.CHAT_GONE:
                gone = None if chat_id is None else (bot_id, chat_id)
                raise self._failed(decision.action, decision.reason, gone=gone) from None
            case Action.FAIL:
                raise self._failed(decision.action, decision.reason) from None

    def _finished(self, sent: outcomes.Sent) -> queue_models.Finish | None:
        recipient, reference = self._recipient, self._reference()
        if recipient is None or recipient.finished is None:
            return None
        finished = recipient.finished

        async def record(conn: AsyncConnection) -> None:
            await finished(conn, reference, sent)

        return record

    def _failed(
        self, action: Action, reason: str, *, gone: tuple[int, int] | None = None
    ) -> retry.PermanentFailure:
        """The job's end when the send will not go: dead, with the hooks and the recipient
        told in the transaction that marks it so."""
        outcome = outcomes.Failed(method=self._request.method, action=action, reason=reason)
        recipient: Recipient | None = self._recipient
        reference = self._reference()
        log.warning(
            "outbox.send_failed",
            bot_id=self._request.bot_id,
            chat_id=messages.chat_of(self._request),
            method=self._request.method,
            action=action.value,
            reason=reason,
        )

        async def record(conn: AsyncConnection) -> None:
            if gone is not None:
                await self._outbox.chat_gone(conn, bot_id=gone[0], chat_id=gone[1], reason=reason)
            if recipient is not None and recipient.finished is not None:
                await recipient.finished(conn, reference, outcome)

        return retry.PermanentFailure(f"{action.value}: {reason}", record=record)

    def _reference(self) -> Mapping[str, Any]:
        return self._result.reference if self._result is not None else {}

    async def _save(self, payload: Mapping[str, Any]) -> None:
        async with self._rt.db.transaction() as conn:
            await job_store.note_payload(conn, self._job, payload)
