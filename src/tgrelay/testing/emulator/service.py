"""The emulator as one object: its state, the deliveries it runs, and its ASGI app."""

from __future__ import annotations

import asyncio
import copy
import functools
import random
import ssl
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
from starlette.types import Receive, Scope, Send

from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import app as emulator_app
from tgrelay.testing.emulator import (
    callbacks,
    edits,
    errors,
    flood,
    forum,
    groups,
    longpoll,
    media,
    membership,
    objects,
    pusher,
    topics,
    updates,
)
from tgrelay.testing.emulator import text as emulator_text
from tgrelay.testing.emulator.state import BotRecord, EmulatorState, WebhookConfig

_CONNECT_TIMEOUT = 10.0  # seconds
# Longer than any Bot API call's timeout would only emulate an outage.
MAX_LATENCY_SECONDS = 5.0


class Emulator:
    """A Telegram Bot API server in a box, and the hands of its users.

    It is an ASGI app (serve it with uvicorn, or call it through `httpx.ASGITransport`)
    and a Python API for tests. Webhook pushes and long polls run as tasks of the event
    loop it is used in; `aclose()` ends them.

    `webhook_timeout` is how long a push waits for the webhook's answer; `retry` spaces the
    attempts; `webhook_transport` can route pushes in-process (`httpx.ASGITransport`);
    `seed` makes bot ids, chat ids and update_id bases repeatable; `monotonic` is the time
    source of flood control (real monotonic time by default).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        retry: pusher.RetryPolicy | None = None,
        webhook_timeout: float = 10.0,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        seed: int | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.clock = clock if clock is not None else Clock()
        # Seeded: ids and update_id bases repeat between runs; tokens stay truly random.
        self.state = EmulatorState(clock=self.clock, rng=random.Random(seed), monotonic=monotonic)
        self.polls = longpoll.LongPolls()
        self._retry = retry or pusher.RetryPolicy()
        self._webhook_timeout = webhook_timeout
        self._webhook_transport = webhook_transport
        self._client: httpx.AsyncClient | None = None
        self._pushers: dict[int, pusher.WebhookPusher] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False
        self._latency_rng = random.Random(seed)
        self.latency = (0.0, 0.0)  # (least, most) seconds: see set_latency
        self._app = emulator_app.build(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def __aenter__(self) -> Self:
        self.start()
        return self

    def start(self) -> None:
        """Undo `aclose`: long polls wait again and pending webhook pushes resume."""
        if not self._closed:
            return
        self._closed = False
        self.polls.reopen()
        for record in self.state.bots():
            self._dispatch(record.id)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop webhook pushes, answer waiting long polls, close the HTTP client.

        The state stays readable; a closed emulator pushes nothing and never waits.
        """
        self._closed = True
        self.polls.close()
        for bot_id in list(self._pushers):
            self._stop_pusher(bot_id)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
            self._stopping.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # Bots

    def create_bot(self, username: str, *, first_name: str | None = None) -> BotRecord:
        """A bot (or the existing one with this username) with a working token."""
        return self.state.create_bot(username, first_name=first_name)

    def bot(self, bot_id: int) -> BotRecord:
        return self.state.bot(bot_id)

    def revoke(self, bot_id: int) -> BotRecord:
        """The bot's token answers 401 from now on."""
        record = self.state.revoke(bot_id)
        self.polls.notify(bot_id)
        return record

    def rotate_token(self, bot_id: int) -> str:
        """A new token for the same bot; the old one answers 401."""
        record = self.state.rotate_token(bot_id)
        self.polls.notify(bot_id)
        return record.token

    # Webhooks

    def webhook_of(self, bot_id: int) -> WebhookConfig | None:
        return self.state.webhook_of(bot_id)

    def webhook_info(self, bot_id: int) -> dict[str, Any]:
        """What getWebhookInfo would answer."""
        return self.state.webhook_info(bot_id)

    def set_webhook(
        self,
        bot_id: int,
        url: str,
        *,
        secret_token: str | None = None,
        max_connections: int = 40,
        allowed_updates: Sequence[str] | None = None,
        drop_pending_updates: bool = False,
    ) -> bool:
        """Point the bot's updates at a URL (what setWebhook does); True if anything changed.

        `allowed_updates` None keeps the bot's setting; an empty list restores the default.
        """
        if allowed_updates is not None:
            self.state.set_allowed_updates(bot_id, updates.normalize_allowed(allowed_updates))
        changed = self.state.set_webhook(
            bot_id,
            url=url,
            secret_token=secret_token,
            max_connections=max_connections,
            drop_pending_updates=drop_pending_updates,
        )
        self._dispatch(bot_id)
        return changed

    def set_webhook_as_foreign(
        self, bot_id: int, url: str, *, secret_token: str | None = None
    ) -> WebhookConfig:
        """Another service called setWebhook with this bot's token and took its updates."""
        self.set_webhook(bot_id, url, secret_token=secret_token)
        config = self.state.webhook_of(bot_id)
        assert config is not None
        return config

    def delete_webhook(self, bot_id: int, *, drop_pending_updates: bool = False) -> bool:
        """Back to getUpdates (what deleteWebhook does); True if a webhook was set."""
        had = self.state.delete_webhook(bot_id, drop_pending_updates=drop_pending_updates)
        self._dispatch(bot_id)
        return had

    # Users acting

    def send_message(
        self,
        bot_id: int,
        from_user: Mapping[str, Any],
        chat: Mapping[str, Any] | None,
        text: str,
        *,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """A user writes `text` to the bot; `chat` None means their private chat, and a chat
        given as just `{"id": …}` is one the emulator knows. `message_thread_id` writes in a
        forum topic; `reply_to_message_id` replies to a message there.

        Returns the Update as queued (a user who had blocked the bot unblocks it first,
        which queues a `my_chat_member` before it).
        """
        content = {"text": text, "entities": emulator_text.command_entities(text)}
        return self._user_posts(
            bot_id, from_user, chat, content, message_thread_id, reply_to_message_id
        )

    def send_media(
        self,
        bot_id: int,
        from_user: Mapping[str, Any],
        chat: Mapping[str, Any] | None,
        kind: str,
        *,
        caption: str | None = None,
        details: Mapping[str, Any] | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any]:
        """A user sends a photo, document, video, voice message or sticker (`kind`), which
        gets fresh file_id / file_unique_id the bot can send again; `details` override the
        file's defaults (`media.DEFAULTS`: file_name, mime_type, width, duration, …).

        Chats and topics as in `send_message`; returns the Update as queued.
        """
        try:
            media_kind = media.Kind(kind)
        except ValueError:
            raise errors.InvalidPayload(f"kind must be one of {', '.join(media.Kind)}") from None
        if caption and not media_kind.has_caption:
            raise errors.InvalidPayload(f"a {kind} has no caption")
        file = self.state.files.new(bot_id, media_kind, details)
        content = media.content(file, caption or "", emulator_text.command_entities(caption or ""))
        return self._user_posts(
            bot_id, from_user, chat, content, message_thread_id, reply_to_message_id
        )

    def _user_posts(
        self,
        bot_id: int,
        from_user: Mapping[str, Any],
        chat: Mapping[str, Any] | None,
        content: Mapping[str, Any],
        message_thread_id: int | None,
        reply_to_message_id: int | None,
    ) -> dict[str, Any]:
        user = objects.parse_user(from_user)
        if chat is not None and set(chat) == {"id"}:
            known = self.state.chat(chat["id"])
            if known is None:
                raise errors.UnknownChat(chat["id"])
            chat = known
        parsed_chat = (
            objects.parse_chat(chat) if chat is not None else objects.private_chat_of(user)
        )
        queued = self.state.user_message(
            bot_id,
            user,
            parsed_chat,
            content,
            message_thread_id=message_thread_id,
            reply_to_message_id=reply_to_message_id,
        )
        self._dispatch(bot_id)
        return copy.deepcopy(queued[-1])

    def edit_message(
        self, bot_id: int, from_user: Mapping[str, Any], chat_id: int, message_id: int, text: str
    ) -> dict[str, Any]:
        """The user edits their message's text (or a media message's caption); returns the
        `edited_message` Update as queued."""
        update = edits.user_edit(
            self.state, bot_id, objects.parse_user(from_user), chat_id, message_id, text
        )
        self._dispatch(bot_id)
        return copy.deepcopy(update)

    def press_button(
        self, bot_id: int, from_user: Mapping[str, Any], chat_id: int, message_id: int, data: str
    ) -> dict[str, Any]:
        """The user presses the inline button with this callback_data on the bot's message;
        returns the `callback_query` Update as queued."""
        update = callbacks.press(
            self.state, bot_id, objects.parse_user(from_user), chat_id, message_id, data
        )
        self._dispatch(bot_id)
        return copy.deepcopy(update)

    def callback_answer(self, query_id: str) -> dict[str, Any] | None:
        """How the bot answered a callback query (`text`, `show_alert`, `url`,
        `cache_time`), or None while unanswered."""
        reply = self.state.callbacks.reply_to(query_id)
        return None if reply is None else reply.to_json()

    def inject_update(self, bot_id: int, update: Mapping[str, Any]) -> dict[str, Any]:
        """Deliver any Update body (update_id assigned when absent); returns it as queued.

        Null fields are dropped, as Telegram never sends them (handy with aiogram dumps).
        """
        queued = self.state.enqueue(bot_id, objects.compact(update))
        self._dispatch(bot_id)
        return copy.deepcopy(queued)

    # Groups, membership and topics

    def create_chat(
        self,
        chat_type: str,
        title: str,
        *,
        is_forum: bool = False,
        username: str | None = None,
        chat_id: int | None = None,
    ) -> dict[str, Any]:
        """A new group or supergroup (`is_forum` for topics) with no bots in it: the Chat.

        `chat_id` picks its id (e.g. a fixture's); by default a fresh one of Telegram's shape.
        """
        chat = groups.create_chat(
            self.state,
            chat_type=chat_type,
            title=title,
            is_forum=is_forum,
            username=username,
            chat_id=chat_id,
        )
        return copy.deepcopy(chat)

    def chat(self, chat_id: int) -> dict[str, Any]:
        """The chat with each bot's status (`members`), its `topics` if a forum, and
        `migrated_to_chat_id` once upgraded."""
        return copy.deepcopy(groups.view(self.state, chat_id))

    def add_bot(
        self,
        chat_id: int,
        bot_id: int,
        by: Mapping[str, Any],
        *,
        status: str = "member",
        rights: Mapping[str, bool] | None = None,
    ) -> list[dict[str, Any]]:
        """A user adds the bot to a group as member or administrator (or promotes it, or
        changes its rights). An administrator has every right but those `rights` sets to
        False (e.g. `{"can_manage_topics": False}`).

        Returns the bot's updates: `my_chat_member`, then the `new_chat_members` message.
        """
        try:
            wanted = membership.Status(status)
        except ValueError:
            raise errors.InvalidPayload("status must be member or administrator") from None
        withheld = frozenset(name for name, granted in (rights or {}).items() if not granted)
        deliveries = groups.add_bot(
            self.state,
            chat_id,
            bot_id,
            by=objects.parse_user(by),
            status=wanted,
            withheld=withheld,
        )
        return self._deliver(deliveries, bot_id)

    def remove_bot(
        self, chat_id: int, bot_id: int, *, by: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """A user kicks the bot (`by`), or it leaves; returns the bot's updates."""
        user = objects.parse_user(by) if by is not None else None
        return self._deliver(groups.remove_bot(self.state, chat_id, bot_id, by=user), bot_id)

    def migrate_chat(self, chat_id: int, *, by: Mapping[str, Any] | None = None) -> int:
        """Upgrade a basic group to a supergroup; returns the supergroup's id."""
        user = objects.parse_user(by) if by is not None else None
        new_chat, deliveries = groups.migrate(self.state, chat_id, by=user)
        self._deliver(deliveries)
        new_id: int = new_chat["id"]
        return new_id

    def block_bot(self, user_id: int, bot_id: int) -> dict[str, Any]:
        """The user blocks the bot; returns the `my_chat_member` update the bot gets."""
        return self._deliver([groups.set_blocked(self.state, user_id, bot_id, blocked=True)])[0]

    def unblock_bot(self, user_id: int, bot_id: int) -> dict[str, Any]:
        """The user unblocks the bot; returns the `my_chat_member` update the bot gets."""
        return self._deliver([groups.set_blocked(self.state, user_id, bot_id, blocked=False)])[0]

    # Telegram Business

    def connect_business(
        self,
        bot_id: int,
        account: Mapping[str, Any],
        *,
        rights: Mapping[str, bool] | None = None,
        is_enabled: bool = True,
    ) -> dict[str, Any]:
        """A business account (a user) connects the bot, with `rights` (by default it may
        read and reply); connecting again changes them. Returns the `business_connection`."""
        self.bot(bot_id)
        made = self.state.business.connect(bot_id, account, rights=rights, is_enabled=is_enabled)
        return self._business_update(made.bot_id, {"business_connection": made.to_json()})

    def change_business_connection(
        self,
        connection_id: str,
        *,
        is_enabled: bool | None = None,
        rights: Mapping[str, bool] | None = None,
        removed: bool = False,
    ) -> dict[str, Any]:
        """The account pauses or resumes the bot, changes its rights, or removes it (then the
        id is invalid from now on); returns the `business_connection` update."""
        changed = self.state.business.change(
            connection_id, is_enabled=is_enabled, rights=rights, removed=removed
        )
        return self._business_update(changed.bot_id, {"business_connection": changed.to_json()})

    def business_message(
        self,
        connection_id: str,
        from_user: Mapping[str, Any],
        text: str | None = None,
        *,
        media_kind: str | None = None,
        caption: str | None = None,
    ) -> dict[str, Any]:
        """A customer writes `text` (or sends a file of `media_kind`) to the business
        account; returns the `business_message` update."""
        connection = self.state.business.get(connection_id)
        if media_kind is None:
            if not text:
                raise errors.InvalidPayload("a message needs text or media")
            content = {"text": text, "entities": emulator_text.command_entities(text)}
        else:
            try:
                kind = media.Kind(media_kind)
            except ValueError:
                raise errors.InvalidPayload(
                    f"kind must be one of {', '.join(media.Kind)}"
                ) from None
            file = self.state.files.new(connection.bot_id, kind, None)
            content = media.content(file, caption or "")
        message = self.state.business.customer_writes(connection_id, from_user, content)
        return self._business_update(connection.bot_id, {"business_message": message})

    def business_account_message(
        self, connection_id: str, chat_id: int, text: str
    ) -> dict[str, Any]:
        """The business account's owner writes `text` in a chat from their app; returns the
        `business_message` update (its sender is the account)."""
        content = {"text": text, "entities": emulator_text.command_entities(text)}
        message = self.state.business.account_writes(connection_id, chat_id, content)
        bot_id = self.state.business.get(connection_id).bot_id
        return self._business_update(bot_id, {"business_message": message})

    def edit_business_message(
        self, connection_id: str, chat_id: int, message_id: int, text: str
    ) -> dict[str, Any]:
        """The customer edits a text message; returns the `edited_business_message` update."""
        edited = self.state.business.edit(connection_id, chat_id, message_id, text)
        bot_id = self.state.business.get(connection_id).bot_id
        return self._business_update(bot_id, {"edited_business_message": edited})

    def delete_business_messages(
        self, connection_id: str, chat_id: int, message_ids: list[int]
    ) -> dict[str, Any]:
        """Messages deleted from a business chat; returns `deleted_business_messages`."""
        deleted = self.state.business.delete(connection_id, chat_id, message_ids)
        bot_id = self.state.business.get(connection_id).bot_id
        return self._business_update(bot_id, {"deleted_business_messages": deleted})

    def business_messages(self, connection_id: str, chat_id: int) -> list[dict[str, Any]]:
        """The account's chat with a customer as it now is (the bot's sends included)."""
        return self.state.business.messages(connection_id, chat_id)

    def _business_update(self, bot_id: int, update: Mapping[str, Any]) -> dict[str, Any]:
        queued = self.state.enqueue(bot_id, copy.deepcopy(dict(update)))
        self._dispatch(bot_id)
        return copy.deepcopy(queued)

    def create_forum_topic(
        self,
        bot_id: int,
        chat_id: int | str,
        name: str,
        *,
        icon_color: int | None = None,
        icon_custom_emoji_id: str | None = None,
    ) -> forum.Topic:
        """What createForumTopic does: the bot opens a topic in a forum it administers."""
        topic, deliveries = topics.create(
            self.state,
            bot_id,
            chat_id,
            name=name,
            icon_color=icon_color,
            icon_custom_emoji_id=icon_custom_emoji_id,
        )
        self._deliver(deliveries)
        return topic

    def edit_forum_topic(
        self,
        bot_id: int,
        chat_id: int | str,
        message_thread_id: int | None,
        *,
        name: str | None = None,
        icon_custom_emoji_id: str | None = None,
    ) -> None:
        """What editForumTopic does: a new name or icon for a topic."""
        self._deliver(
            topics.edit(
                self.state,
                bot_id,
                chat_id,
                message_thread_id,
                name=name,
                icon_custom_emoji_id=icon_custom_emoji_id,
            )
        )

    def set_forum_topic_closed(
        self, bot_id: int, chat_id: int | str, message_thread_id: int | None, *, closed: bool
    ) -> None:
        """What closeForumTopic (`closed`) and reopenForumTopic do."""
        self._deliver(
            topics.set_closed(self.state, bot_id, chat_id, message_thread_id, closed=closed)
        )

    def set_topic_limit(self, limit: flood.Limit | None) -> None:
        """At most `limit.count` topics opened per chat in any `limit.window` seconds of the
        emulator's clock (more answer 429 with retry_after); None: no limit (the default)."""
        self.state.topic_limit.configure(limit)

    # Flood control

    def set_flood_control(
        self, *, enabled: bool = True, limits: flood.Limits | None = None
    ) -> None:
        """Switch Telegram's sending limits on or off (`limits` None: Telegram's own)."""
        self.state.flood.configure(enabled=enabled, limits=limits or flood.Limits())

    def flood_report(self) -> dict[str, Any]:
        """The flood settings and how many sends went out and were refused, by chat."""
        return self.state.flood.report()

    # The network

    def set_latency(self, max_seconds: float, *, min_seconds: float = 0.0) -> None:
        """Hold each Bot API request between `min_seconds` and `max_seconds` (uniformly at
        random) before Telegram sees it, as a long and congested network path does: requests
        then arrive out of step with when they were sent, and flood control counts them by
        arrival. 0 switches it off."""
        if not 0 <= min_seconds <= max_seconds <= MAX_LATENCY_SECONDS:
            raise errors.InvalidPayload(
                f"latency needs 0 <= min_seconds <= max_seconds <= {MAX_LATENCY_SECONDS}"
            )
        self.latency = (min_seconds, max_seconds)

    async def travel(self) -> None:
        """A Bot API request's way here, as `set_latency` shapes it."""
        if self.latency[1] > 0:
            await asyncio.sleep(self._latency_rng.uniform(*self.latency))

    def _deliver(
        self, deliveries: Iterable[groups.Delivery], bot_id: int | None = None
    ) -> list[dict[str, Any]]:
        """Push what changed for each bot concerned; returns the updates (of `bot_id` only,
        if given)."""
        deliveries = list(deliveries)
        for concerned in dict.fromkeys(bot for bot, _ in deliveries):
            self._dispatch(concerned)
        return [copy.deepcopy(u) for bot, u in deliveries if bot_id in (None, bot)]

    # Observing

    def message(
        self, chat_id: int, message_id: int, *, bot_id: int | None = None
    ) -> dict[str, Any]:
        """A message as it now is (edits included); `bot_id` names the bot whose private
        chat it is in (groups share one history)."""
        chat = self.state.chat(chat_id)
        if chat is None:
            raise errors.UnknownChat(chat_id)
        if chat["type"] == "private" and bot_id is None:
            raise errors.InvalidPayload("a private chat's message needs the bot_id")
        message = self.state.chats.full_message(bot_id or 0, chat, message_id)
        if message is None:
            raise errors.InvalidPayload(f"no message {message_id} in chat {chat_id}")
        return copy.deepcopy(message)

    def sent_messages(self, chat_id: int, *, bot_id: int | None = None) -> list[dict[str, Any]]:
        """Messages bots sent to the chat, in order (optionally only one bot's)."""
        return copy.deepcopy(self.state.sent_messages(chat_id, bot_id=bot_id))

    def pending_updates(self, bot_id: int) -> list[dict[str, Any]]:
        """Updates neither confirmed by getUpdates nor acknowledged by the webhook."""
        return [copy.deepcopy(p.body) for p in self.state.pending(bot_id)]

    async def wait_until_delivered(self, bot_id: int, *, timeout: float = 5.0) -> None:
        """Return once the bot has no pending update; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            # Pending updates shrink in several places (pushes, getUpdates, drops): look often.
            while self.state.pending(bot_id):  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    # Delivery

    def _dispatch(self, bot_id: int) -> None:
        """After a change: push by webhook if one is set, else wake the long poll."""
        config = self.state.webhook_of(bot_id)
        current = self._pushers.get(bot_id)
        if current is not None and (config is None or not current.targets(config)):
            self._stop_pusher(bot_id)
        self.polls.notify(bot_id)
        if config is None or self._closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # outside an event loop: the next change inside one starts the pushes
        if bot_id not in self._pushers:
            self._pushers[bot_id] = pusher.WebhookPusher(
                bot_id=bot_id,
                config=config,
                state=self.state,
                client=self._http_client(),
                policy=self._retry,
            )
        self._pushers[bot_id].kick()

    def _stop_pusher(self, bot_id: int) -> None:
        stopped = self._pushers.pop(bot_id)
        self._stopping = {task for task in self._stopping if not task.done()}
        self._stopping.update(stopped.stop())

    def _http_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._webhook_transport,
                # Connecting gets its own, longer allowance: a loaded test machine can be
                # slow to accept, and a short webhook_timeout is meant for the answer.
                timeout=httpx.Timeout(
                    self._webhook_timeout, connect=max(self._webhook_timeout, _CONNECT_TIMEOUT)
                ),
                # max_connections per bot is enforced by each pusher, not by the pool.
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
                follow_redirects=False,
                verify=_tls_context(),
            )
        return self._client


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every emulator in the process: building one costs ~0.2 s, and
    test suites create hundreds of emulators. It is never modified after creation."""
    return ssl.create_default_context()
