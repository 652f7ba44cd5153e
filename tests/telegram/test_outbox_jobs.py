"""The outbox's send job, run by a real worker on a real SQLite database, against a small fake
of TelegramClient: what each of Telegram's answers leads to, and who hears of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from structlog.testing import capture_logs

from tests.e2e.harness import eventually
from tgrelay import errors
from tgrelay.queue import retry
from tgrelay.queue import store as job_store
from tgrelay.queue.models import Job, JobState
from tgrelay.queue.worker import Registry, Worker
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.telegram.client import TelegramClients
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages, outcomes, turn
from tgrelay.telegram.outbox.actions import Action
from tgrelay.telegram.outbox.registry import Outbox, Result

BOT = 123456
TOKEN = f"{BOT}:" + "A" * 35
GROUP = -1001
SUPERGROUP = -1002001
USER = 42


@dataclass
class FakeClient:
    """Stands in for TelegramClient: records each call and answers from a script (an error to
    raise, or None for success), then succeeds."""

    script: list[errors.TelegramError | None] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def _answer(self, method: str, arguments: dict[str, Any]) -> None:
        self.calls.append((method, arguments))
        if self.script and (error := self.script.pop(0)) is not None:
            raise error

    async def send_message(self, **arguments: Any) -> Any:
        self._answer("sendMessage", arguments)
        return SimpleNamespace(message_id=100 + len(self.calls))

    async def send_file(self, method: str, **arguments: Any) -> Any:
        self._answer(method, arguments)
        return SimpleNamespace(message_id=100 + len(self.calls))

    async def copy_message(self, **arguments: Any) -> int:
        self._answer("copyMessage", arguments)
        return 100 + len(self.calls)

    async def edit_message_text(self, **arguments: Any) -> None:
        self._answer("editMessageText", arguments)

    async def edit_message_reply_markup(self, **arguments: Any) -> None:
        self._answer("editMessageReplyMarkup", arguments)

    async def create_forum_topic(self, **arguments: Any) -> int:
        self._answer("createForumTopic", arguments)
        return 77

    async def edit_forum_topic(self, **arguments: Any) -> None:
        self._answer("editForumTopic", arguments)

    async def close_forum_topic(self, **arguments: Any) -> None:
        self._answer("closeForumTopic", arguments)

    async def reopen_forum_topic(self, **arguments: Any) -> None:
        self._answer("reopenForumTopic", arguments)

    async def answer_callback_query(self, **arguments: Any) -> None:
        self._answer("answerCallbackQuery", arguments)


@dataclass
class FakeClients:
    client: FakeClient

    def for_token(self, token: str) -> FakeClient:
        assert token == TOKEN
        return self.client

    async def aclose(self) -> None:
        pass


@dataclass
class Heard:
    """What the test's recipient and hooks were told, each with whether it ran in a
    transaction (the job's finishing or rescheduling one)."""

    told: list[tuple[Mapping[str, Any], outcomes.Outcome, bool]] = field(default_factory=list)
    migrated: list[tuple[int, int, int, bool]] = field(default_factory=list)
    gone: list[tuple[int, int, str, bool]] = field(default_factory=list)
    readiness: outcomes.Readiness = field(default_factory=outcomes.Go)


@dataclass
class Setup:
    rt: Runtime
    client: FakeClient
    heard: Heard
    worker: Worker

    async def send(
        self, request: messages.Request, *, reference: Mapping[str, Any] | None = None
    ) -> None:
        async with self.rt.db.transaction() as conn:
            await outbox.enqueue(
                conn,
                self.rt,
                request,
                result=None if reference is None else Result(handler="test", reference=reference),
            )
        self.worker.notify()

    async def jobs(self) -> list[Job]:
        async with self.rt.db.engine.connect() as conn:
            return await job_store.list_jobs(conn, state=None, kinds=[outbox.SEND])

    async def settled(self) -> list[Job]:
        """The send jobs once none is pending or running any more."""
        found: list[Job] = []

        async def ended() -> bool:
            nonlocal found
            found = await self.jobs()
            return all(job.state in (JobState.DONE, JobState.DEAD) for job in found)

        await eventually(ended)
        return found


def sample(rt: Runtime, name: str, labels: Mapping[str, str] | None = None) -> float:
    value = rt.metrics.registry.get_sample_value(name, dict(labels or {}))
    return 0.0 if value is None else value


@asynccontextmanager
async def running(
    tmp_path: Path, script: list[errors.TelegramError | None]
) -> AsyncIterator[Setup]:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        log_level="WARNING",
        job_max_attempts=2,
        # Limits far above what a test sends: the turn goes at once.
        send_limit_per_bot=(1000, 1.0),
        send_limit_per_chat=(1000, 1.0),
        send_limit_per_group=(1000, 1.0),
    )
    async with open_runtime(settings) as rt:
        client = FakeClient(script=list(script))
        rt.telegram = cast(TelegramClients, FakeClients(client))
        heard = Heard()

        async def token_of(conn: AsyncConnection, bot_id: int) -> str:
            assert bot_id == BOT
            return TOKEN

        async def ready(conn: AsyncConnection, reference: Mapping[str, Any]) -> outcomes.Readiness:
            return heard.readiness

        async def finished(
            conn: AsyncConnection, reference: Mapping[str, Any], outcome: outcomes.Outcome
        ) -> None:
            heard.told.append((reference, outcome, conn.in_transaction()))

        async def migrated(conn: AsyncConnection, bot_id: int, old: int, new: int) -> None:
            heard.migrated.append((bot_id, old, new, conn.in_transaction()))

        async def gone(conn: AsyncConnection, bot_id: int, chat_id: int, reason: str) -> None:
            heard.gone.append((bot_id, chat_id, reason, conn.in_transaction()))

        wiring = Outbox(token_of=token_of)
        wiring.recipient("test", ready=ready, finished=finished)
        wiring.on_migrated(migrated)
        wiring.on_chat_gone(gone)
        registry = Registry()
        outbox.register(registry, rt, wiring)
        # A retry after a network error comes at once, not after the default backoff.
        worker = Worker(
            rt.db, registry, concurrency=4, policy=retry.RetryPolicy(base_delay=0, jitter=0)
        )
        rt.notify_queue = lambda queue: worker.notify()
        task = asyncio.create_task(worker.run())
        try:
            yield Setup(rt=rt, client=client, heard=heard, worker=worker)
        finally:
            await worker.stop()
            await task


TEXT = messages.SendText(bot_id=BOT, chat_id=GROUP, text="disk almost full")
REFERENCE = {"alert": "a1"}


async def test_a_send_is_delivered_and_its_recipient_told_in_the_finishing_transaction(
    tmp_path: Path,
) -> None:
    """The request reaches Telegram once; the recipient hears Sent with the message id, in the
    transaction that completes the job."""
    async with running(tmp_path, []) as s:
        await s.send(TEXT, reference=REFERENCE)
        [job] = await s.settled()

    assert [method for method, _ in s.client.calls] == ["sendMessage"]
    assert job.state is JobState.DONE
    assert s.heard.told == [(REFERENCE, outcomes.Sent(method="sendMessage", message_id=101), True)]


async def test_a_kicked_bot_runs_the_chat_gone_hooks_and_fails_the_send(tmp_path: Path) -> None:
    """403: the hooks mark the chat, then the recipient hears Failed, both in the transaction
    that marks the job dead; nothing is retried."""
    kicked = errors.TelegramForbidden(
        "sendMessage: Forbidden: bot was kicked from the group chat", method="sendMessage"
    )
    async with running(tmp_path, [kicked]) as s:
        await s.send(TEXT, reference=REFERENCE)
        [job] = await s.settled()

    reason = "sendMessage: Forbidden: bot was kicked from the group chat"
    assert (job.state, len(s.client.calls)) == (JobState.DEAD, 1)
    assert s.heard.gone == [(BOT, GROUP, reason, True)]
    assert s.heard.told == [
        (
            REFERENCE,
            outcomes.Failed(method="sendMessage", action=Action.CHAT_GONE, reason=reason),
            True,
        )
    ]


async def test_a_migrated_group_is_followed_and_the_send_goes_to_the_supergroup(
    tmp_path: Path,
) -> None:
    """400 with migrate_to_chat_id: the migration hooks run in the rescheduling transaction,
    and the same send goes to the new chat, without spending an attempt."""
    upgraded = errors.TelegramBadRequest(
        "sendMessage: Bad Request: group chat was upgraded to a supergroup chat",
        method="sendMessage",
        migrate_to_chat_id=SUPERGROUP,
    )
    async with running(tmp_path, [upgraded]) as s:
        await s.send(TEXT, reference=REFERENCE)
        [job] = await s.settled()

    assert [arguments["chat_id"] for _, arguments in s.client.calls] == [GROUP, SUPERGROUP]
    assert s.heard.migrated == [(BOT, GROUP, SUPERGROUP, True)]
    assert (job.state, job.attempts) == (JobState.DONE, 1)
    assert [outcome for _, outcome, _ in s.heard.told] == [
        outcomes.Sent(method="sendMessage", message_id=102)
    ]


async def test_a_429_reschedules_without_spending_an_attempt(tmp_path: Path) -> None:
    """Flood control: the job comes back after retry_after with its attempt given back."""
    flood = errors.TelegramRetryAfter(
        "sendMessage: Too Many Requests: retry after 0", method="sendMessage", retry_after=0
    )
    async with running(tmp_path, [flood, flood]) as s:
        await s.send(TEXT)
        [job] = await s.settled()

    assert (job.state, job.attempts, len(s.client.calls)) == (JobState.DONE, 1, 3)


async def test_a_429_waits_its_retry_after_even_when_the_limiter_cannot_hold_the_chat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis down when a 429 comes: the chat cannot be held for the other sends (they wait for
    the limiter anyway), but this job is still rescheduled with its attempt given back."""
    flood = errors.TelegramRetryAfter(
        "sendMessage: Too Many Requests: retry after 0", method="sendMessage", retry_after=0
    )
    async with running(tmp_path, [flood]) as s:

        async def unreachable(bot_id: int, chat_id: int, seconds: float) -> None:
            raise errors.StorageUnavailable("Redis failed for the rate limiter (ConnectionError)")

        monkeypatch.setattr(s.rt.rate_limiter, "hold_chat", unreachable)
        with capture_logs() as logs:
            await s.send(TEXT)
            [job] = await s.settled()

    assert (job.state, job.attempts, len(s.client.calls)) == (JobState.DONE, 1, 2)
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "ratelimit.hold_lost",
        "telegram.flood_controlled",
    ]


@pytest.mark.parametrize(
    ("request_", "chat_held"),
    [
        (TEXT, True),
        (messages.CreateTopic(bot_id=BOT, chat_id=GROUP, name="#43"), False),
    ],
)
async def test_a_429_holds_the_chat_for_messages_not_for_topic_management(
    tmp_path: Path, request_: messages.Request, chat_held: bool
) -> None:
    """A message's 429 holds its chat for retry_after; a topic limit's holds only that job, so
    messages into the forum's other topics keep going."""
    flood = errors.TelegramRetryAfter(
        f"{request_.method}: Too Many Requests: retry after 30",
        method=request_.method,
        retry_after=30,
    )
    async with running(tmp_path, [flood]) as s:
        await s.send(request_)
        job: Job | None = None

        async def rescheduled() -> bool:
            nonlocal job
            [job] = await s.jobs()
            return job.state is JobState.PENDING and job.last_error is not None

        await eventually(rescheduled)
        slot = await s.rt.rate_limiter.reserve(BOT, GROUP)

    assert job is not None
    assert job.last_error == "Telegram flood control (429)"
    assert (slot.wait_seconds > 25) is chat_held


async def test_an_unchanged_edit_is_a_success(tmp_path: Path) -> None:
    """Telegram's "message is not modified" means the message already reads as asked."""
    same = errors.TelegramBadRequest(
        "editMessageText: Bad Request: message is not modified: specified new message content "
        "and reply markup are exactly the same as a current content and reply markup of the "
        "message",
        method="editMessageText",
    )
    edit = messages.EditText(bot_id=BOT, chat_id=GROUP, message_id=55, text="status: open")
    async with running(tmp_path, [same]) as s:
        await s.send(edit, reference=REFERENCE)
        [job] = await s.settled()

    assert job.state is JobState.DONE
    assert [outcome for _, outcome, _ in s.heard.told] == [
        outcomes.Sent(method="editMessageText", message_id=55)
    ]


async def test_retries_run_out_into_a_failure_the_recipient_hears(tmp_path: Path) -> None:
    """A network error is retried; on the last attempt the send fails for good, the recipient
    told, and the retry counts as a possible duplicate (the first request may have arrived),
    in the metric and in a log line that outlives the process."""
    down = errors.TelegramUnavailable("sendMessage: ServerDisconnectedError", method="sendMessage")
    with structlog.testing.capture_logs() as logged:
        async with running(tmp_path, [down, down]) as s:
            await s.send(TEXT, reference=REFERENCE)
            [job] = await s.settled()
            duplicates = sample(s.rt, "tgrelay_possible_duplicate_sends_total")

    assert (job.state, job.attempts, len(s.client.calls)) == (JobState.DEAD, 2, 2)
    assert duplicates == 1.0
    assert [
        (line["job_id"], line["method"], line["chat_id"])
        for line in logged
        if line["event"] == "telegram.possible_duplicate_send"
    ] == [(job.id, "sendMessage", TEXT.chat_id)]
    assert [outcome for _, outcome, _ in s.heard.told] == [
        outcomes.Failed(
            method="sendMessage",
            action=Action.RETRY,
            reason="Telegram unreachable: sendMessage: ServerDisconnectedError",
        )
    ]


async def test_a_send_is_recorded_as_attempted_before_its_request(tmp_path: Path) -> None:
    """The job's row says which attempt handed the request to Telegram, before it did."""
    rows: list[Any] = []
    async with running(tmp_path, []) as s:
        original = s.client.send_message

        async def looking(**arguments: Any) -> Any:
            rows.extend(job.payload.get(turn.ATTEMPTED) for job in await s.jobs())
            return await original(**arguments)

        s.client.send_message = looking  # type: ignore[method-assign]
        await s.send(TEXT)
        await s.settled()

    assert rows == [1]


async def test_a_recipient_may_drop_or_refuse_a_send_before_its_request(tmp_path: Path) -> None:
    """Drop ends the job quietly; Refuse fails it with the recipient's reason; neither calls
    Telegram."""
    async with running(tmp_path, []) as s:
        s.heard.readiness = outcomes.Drop()
        await s.send(TEXT, reference={"n": 1})
        [dropped] = await s.settled()
        s.heard.readiness = outcomes.Refuse(reason="the connection was deleted")
        await s.send(TEXT, reference={"n": 2})
        [_, refused] = await s.settled()

    assert (dropped.state, refused.state, s.client.calls) == (JobState.DONE, JobState.DEAD, [])
    assert s.heard.told == [
        (
            {"n": 2},
            outcomes.Failed(
                method="sendMessage", action=Action.FAIL, reason="the connection was deleted"
            ),
            True,
        )
    ]


async def test_a_recipient_may_say_where_the_send_goes_now(tmp_path: Path) -> None:
    """A destination from `ready` (a connection moved, its topic made) replaces the request's."""
    async with running(tmp_path, []) as s:
        s.heard.readiness = outcomes.Go(
            destination=messages.Destination(chat_id=SUPERGROUP, message_thread_id=77)
        )
        await s.send(TEXT, reference=REFERENCE)
        await s.settled()

    [(_, arguments)] = s.client.calls
    assert (arguments["chat_id"], arguments["message_thread_id"]) == (SUPERGROUP, 77)


async def test_a_recipient_may_replace_the_request_for_this_run(tmp_path: Path) -> None:
    """A request from `ready` (ids known only at send time) is what goes, and what the
    recipient hears of."""
    derived = messages.CopyMessage(
        bot_id=BOT, chat_id=GROUP, from_chat_id=USER, message_id=5, reply_to_message_id=9
    )
    async with running(tmp_path, []) as s:
        s.heard.readiness = outcomes.Go(request=derived)
        await s.send(TEXT, reference=REFERENCE)
        await s.settled()

    [(method, arguments)] = s.client.calls
    assert (method, arguments["message_id"], arguments["reply_to_message_id"]) == (
        "copyMessage",
        5,
        9,
    )
    assert s.heard.told == [(REFERENCE, outcomes.Sent(method="copyMessage", message_id=101), True)]


async def test_the_turn_wait_is_observed(tmp_path: Path) -> None:
    """Every send that starts adds its wait for a turn to the histogram."""
    async with running(tmp_path, []) as s:
        await s.send(TEXT)
        await s.settled()
        count = sample(s.rt, "tgrelay_telegram_turn_wait_seconds_count")

    assert count == 1.0


@pytest.mark.parametrize(
    "request_",
    [
        messages.SendText(
            bot_id=BOT,
            chat_id=GROUP,
            text="*new* ticket",
            parse_mode="MarkdownV2",
            reply_to_message_id=3,
            message_thread_id=9,
            keyboard=messages.Keyboard(
                rows=(
                    (
                        messages.CallbackButton(text="Close", callback_data="close:t_1"),
                        messages.UrlButton(text="Open", url="https://example.com/t/1"),
                    ),
                )
            ),
        ),
        messages.SendText(
            bot_id=BOT,
            chat_id=USER,
            text="bold",
            entities=(messages.Entity(type="bold", offset=0, length=4),),
        ),
        messages.SendFile(
            bot_id=BOT, chat_id=GROUP, method="sendPhoto", file_id="AgAD", caption="a photo"
        ),
        messages.SendFile(bot_id=BOT, chat_id=GROUP, method="sendSticker", file_id="CAAC"),
        messages.CopyMessage(bot_id=BOT, chat_id=GROUP, from_chat_id=USER, message_id=5),
        messages.EditText(bot_id=BOT, chat_id=GROUP, message_id=5, text="edited"),
        messages.EditKeyboard(bot_id=BOT, chat_id=GROUP, message_id=5),
        messages.CreateTopic(bot_id=BOT, chat_id=GROUP, name="#42 Billing"),
        messages.EditTopic(bot_id=BOT, chat_id=GROUP, message_thread_id=9, name="#42 Closed"),
        messages.CloseTopic(bot_id=BOT, chat_id=GROUP, message_thread_id=9),
        messages.ReopenTopic(bot_id=BOT, chat_id=GROUP, message_thread_id=9),
        messages.AnswerCallback(bot_id=BOT, callback_query_id="cq1", text="Closed"),
    ],
)
def test_every_request_reads_back_from_its_payload(request_: messages.Request) -> None:
    """A request survives the job payload's JSON unchanged."""
    assert messages.load(messages.dump(request_)) == request_


@pytest.mark.parametrize("data", ["", "x" * 65, "é" * 33])
def test_callback_data_over_64_bytes_is_refused_when_the_button_is_built(data: str) -> None:
    """Telegram counts callback_data in bytes (1-64); the model refuses more at once."""
    with pytest.raises(ValidationError, match="callback_data must be 1-64 bytes"):
        messages.CallbackButton(text="Close", callback_data=data)


async def test_a_send_is_written_in_the_callers_transaction_and_wakes_after_commit(
    tmp_path: Path,
) -> None:
    """enqueue writes a job keyed per bot and chat (or by the domain's key; none for a callback
    answer), and wakes the queue's worker only once the transaction commits."""
    settings = Settings(_env_file=None, data_dir=tmp_path, log_level="WARNING")
    async with open_runtime(settings) as rt:
        wakes: list[str] = []
        rt.notify_queue = wakes.append
        async with rt.db.transaction() as conn:
            await outbox.enqueue(conn, rt, TEXT)
            await outbox.enqueue(conn, rt, TEXT, ordering_key="notify:conn_1")
            await outbox.enqueue(
                conn, rt, messages.AnswerCallback(bot_id=BOT, callback_query_id="cq1")
            )
            in_transaction = list(wakes)
        async with rt.db.engine.connect() as conn:
            jobs = await job_store.list_jobs(conn, state=None, kinds=[outbox.SEND])

    assert [job.ordering_key for job in jobs] == [f"send:{BOT}:{GROUP}", "notify:conn_1", None]
    assert [messages.load(job.payload[outbox.REQUEST]) for job in jobs[:1]] == [TEXT]
    assert (in_transaction, wakes) == ([], ["default"] * 3)


async def test_sends_of_one_key_go_in_the_order_asked(tmp_path: Path) -> None:
    """Per-chat order: a later send to the same chat waits for the earlier one, even when the
    earlier one is flood-controlled first."""
    flood = errors.TelegramRetryAfter(
        "sendMessage: Too Many Requests: retry after 0", method="sendMessage", retry_after=0
    )
    async with running(tmp_path, [flood]) as s:
        async with s.rt.db.transaction() as conn:
            for n in range(3):
                await outbox.enqueue(
                    conn, s.rt, messages.SendText(bot_id=BOT, chat_id=GROUP, text=f"#{n}")
                )
        s.worker.notify()
        await s.settled()

    assert [arguments["text"] for _, arguments in s.client.calls] == ["#0", "#0", "#1", "#2"]


async def test_a_send_naming_no_registered_recipient_dies_unsent(tmp_path: Path) -> None:
    """A recipient missing from the wiring is a bug to see among dead jobs, not a send whose
    outcome nobody records."""
    async with running(tmp_path, []) as s:
        async with s.rt.db.transaction() as conn:
            await outbox.enqueue(conn, s.rt, TEXT, result=Result(handler="nobody", reference={}))
        s.worker.notify()
        [job] = await s.settled()

    assert (job.state, s.client.calls) == (JobState.DEAD, [])
    assert job.last_error is not None
    assert "no outbox recipient 'nobody'" in job.last_error


def test_a_recipient_name_is_registered_once() -> None:
    """Two domains cannot share a recipient name: the second registration is refused."""

    async def token_of(conn: AsyncConnection, bot_id: int) -> str:
        return TOKEN

    wiring = Outbox(token_of=token_of)
    wiring.recipient("groups.notification")
    with pytest.raises(ValueError, match="registered already"):
        wiring.recipient("groups.notification")
