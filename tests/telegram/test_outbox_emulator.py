"""The outbox against the emulator: every kind of request goes through the send job, aiogram and
HTTP, the way the support desk will use them, and each recipient hears what Telegram gave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tests.e2e.harness import eventually
from tgrelay.queue.worker import Registry, Worker
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages, outcomes
from tgrelay.telegram.outbox.registry import Outbox, Result
from tgrelay.testing.emulator.state import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator

ALICE: dict[str, Any] = {"id": 7001, "is_bot": False, "first_name": "Alice"}
AGENT: dict[str, Any] = {"id": 7002, "is_bot": False, "first_name": "Bob"}


@dataclass
class Desk:
    """A stand-in for the support desk: what its recipient heard, by step."""

    rt: Runtime
    bot: BotRecord
    heard: dict[str, outcomes.Outcome] = field(default_factory=dict)

    async def send(self, *steps: tuple[str, messages.Request]) -> dict[str, outcomes.Outcome]:
        """Enqueue the steps in one transaction (one chat: they go in this order) and wait for
        every outcome."""
        async with self.rt.db.transaction() as conn:
            for step, request in steps:
                await outbox.enqueue(
                    conn, self.rt, request, result=Result(handler="desk", reference={"step": step})
                )

        async def heard_all() -> bool:
            return all(step in self.heard for step, _ in steps)

        await eventually(heard_all)
        return {step: self.heard[step] for step, _ in steps}


@asynccontextmanager
async def desk(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Desk]:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        log_level="WARNING",
        telegram_api_url=emulator.base_url,
        # Far above what the test sends, as the emulator enforces none: no turn waits.
        send_limit_per_bot=(1000, 1.0),
        send_limit_per_chat=(1000, 1.0),
        send_limit_per_group=(1000, 1.0),
    )
    bot = emulator.emulator.create_bot("desk_bot")
    async with open_runtime(settings) as rt:
        found = Desk(rt=rt, bot=bot)

        async def token_of(conn: AsyncConnection, bot_id: int) -> str:
            return bot.token

        async def finished(
            conn: AsyncConnection, reference: Mapping[str, Any], outcome: outcomes.Outcome
        ) -> None:
            found.heard[str(reference["step"])] = outcome

        wiring = Outbox(token_of=token_of)
        wiring.recipient("desk", finished=finished)
        registry = Registry()
        outbox.register(registry, rt, wiring)
        worker = Worker(rt.db, registry, concurrency=4)
        rt.notify_queue = lambda queue: worker.notify()
        task = asyncio.create_task(worker.run())
        try:
            yield found
        finally:
            await worker.stop()
            await task


async def test_a_ticket_lives_through_the_outbox(emulator: RunningEmulator, tmp_path: Path) -> None:
    """Topic, copies of a customer's document and photo, a header with a button, its edits
    (one unchanged: a success), the press's answer, the topic renamed, closed and reopened."""
    telegram = emulator.emulator
    async with desk(emulator, tmp_path) as d:
        forum = telegram.create_chat("supergroup", "Support", is_forum=True)
        telegram.add_bot(forum["id"], d.bot.id, ALICE, status="administrator")
        document = telegram.send_media(d.bot.id, ALICE, None, "document")["message"]
        photo = telegram.send_media(d.bot.id, ALICE, None, "photo")["message"]
        chat, bot = forum["id"], d.bot.id

        created = await d.send(
            ("topic", messages.CreateTopic(bot_id=bot, chat_id=chat, name="#42"))
        )
        thread = created["topic"]
        assert isinstance(thread, outcomes.Sent)
        assert thread.message_thread_id is not None
        in_topic = {"bot_id": bot, "chat_id": chat, "message_thread_id": thread.message_thread_id}
        close = messages.CallbackButton(text="Close", callback_data="ticket:42:close")
        sent = await d.send(
            (
                "copy",
                messages.CopyMessage(
                    **in_topic, from_chat_id=ALICE["id"], message_id=document["message_id"]
                ),
            ),
            (
                "photo",
                messages.SendFile(
                    **in_topic,
                    method="sendPhoto",
                    file_id=photo["photo"][-1]["file_id"],
                    caption="from Alice",
                ),
            ),
            (
                "header",
                messages.SendText(
                    **in_topic, text="Ticket #42: open", keyboard=messages.Keyboard.column(close)
                ),
            ),
        )
        header = sent["header"]
        assert isinstance(header, outcomes.Sent)
        assert header.message_id is not None
        pressed = telegram.press_button(bot, AGENT, chat, header.message_id, "ticket:42:close")
        query_id = pressed["callback_query"]["id"]
        on_header = {"bot_id": bot, "chat_id": chat, "message_id": header.message_id}
        changed = await d.send(
            ("answer", messages.AnswerCallback(bot_id=bot, callback_query_id=query_id, text="Ok")),
            ("edit", messages.EditText(**on_header, text="Ticket #42: closed")),
            ("same", messages.EditText(**on_header, text="Ticket #42: closed")),
            ("unbuttoned", messages.EditKeyboard(**on_header)),
            (
                "renamed",
                messages.EditTopic(
                    bot_id=bot,
                    chat_id=chat,
                    message_thread_id=thread.message_thread_id,
                    name="#42 done",
                ),
            ),
            (
                "closed",
                messages.CloseTopic(
                    bot_id=bot, chat_id=chat, message_thread_id=thread.message_thread_id
                ),
            ),
            (
                "reopened",
                messages.ReopenTopic(
                    bot_id=bot, chat_id=chat, message_thread_id=thread.message_thread_id
                ),
            ),
        )

    topic_id = thread.message_thread_id
    assert changed == {
        "answer": outcomes.Sent(method="answerCallbackQuery"),
        "edit": outcomes.Sent(method="editMessageText", message_id=header.message_id),
        # Telegram's "message is not modified": the message already reads so.
        "same": outcomes.Sent(method="editMessageText", message_id=header.message_id),
        "unbuttoned": outcomes.Sent(method="editMessageReplyMarkup", message_id=header.message_id),
        "renamed": outcomes.Sent(method="editForumTopic", message_thread_id=topic_id),
        "closed": outcomes.Sent(method="closeForumTopic", message_thread_id=topic_id),
        "reopened": outcomes.Sent(method="reopenForumTopic", message_thread_id=topic_id),
    }
    posted = telegram.sent_messages(chat)
    assert [(m["message_id"], m.get("message_thread_id")) for m in posted] == [
        (outcome.message_id, thread.message_thread_id)
        for outcome in sent.values()
        if isinstance(outcome, outcomes.Sent)
    ]
    now = telegram.message(chat, header.message_id)
    assert (now["text"], now.get("reply_markup")) == ("Ticket #42: closed", None)
    assert telegram.callback_answer(query_id) == {
        "text": "Ok",
        "show_alert": False,
        "url": None,
        "cache_time": 0,
    }
    topics = telegram.chat(chat)["topics"]
    assert [(t["message_thread_id"], t["name"], t["is_closed"]) for t in topics] == [
        (thread.message_thread_id, "#42 done", False)
    ]
