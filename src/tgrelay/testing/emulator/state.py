"""What the emulated Telegram knows: bots, chats, messages and each bot's update queue.

Plain data and synchronous rules; nothing here waits or talks to the network. Errors a
client can see are raised as `errors.BotApiError` in Telegram's words.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import itertools
import random
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import (
    business,
    callbacks,
    chats,
    errors,
    flood,
    forum,
    media,
    membership,
    objects,
    updates,
)

TOKEN_SHAPE = re.compile(r"(\d+):[A-Za-z0-9_-]+")
_TOKEN_ALPHABET = string.ascii_letters + string.digits + "_-"
_TOKEN_SECRET_LENGTH = 35


@dataclass(frozen=True, kw_only=True)
class BotRecord:
    """A bot as BotFather knows it."""

    id: int
    username: str
    first_name: str
    token: str
    # A revoked bot answers 401 to every token until `rotate_token` issues a new one.
    revoked: bool = False
    can_join_groups: bool = True
    can_read_all_group_messages: bool = False

    def user_json(self) -> dict[str, Any]:
        """The bot as a User object, e.g. a message's `from`."""
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    def me_json(self) -> dict[str, Any]:
        """getMe's result."""
        return {
            **self.user_json(),
            "can_join_groups": self.can_join_groups,
            "can_read_all_group_messages": self.can_read_all_group_messages,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    """A bot's webhook as the last setWebhook left it."""

    url: str
    secret_token: str | None = None
    max_connections: int = 40
    # The bot's allowed_updates setting (shared with getUpdates); None is Telegram's default.
    allowed_updates: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class PendingUpdate:
    """An update waiting for getUpdates to confirm it or the webhook to answer 2xx."""

    # Emulator-internal position in the queue; update_id may repeat when a test injects twins.
    seq: int
    body: dict[str, Any]

    @property
    def update_id(self) -> int:
        update_id: int = self.body["update_id"]
        return update_id


@dataclass(kw_only=True)
class _Bot:
    record: BotRecord
    webhook: WebhookConfig | None = None
    allowed_updates: tuple[str, ...] | None = None
    next_update_id: int
    pending: dict[int, PendingUpdate] = field(default_factory=dict)
    last_error_date: int | None = None
    last_error_message: str | None = None
    # Chats this bot has seen an update from; it may write only there.
    known_chats: set[int] = field(default_factory=set)


class EmulatorState:
    """All of the emulated Telegram's data and the rules that change it."""

    def __init__(
        self,
        *,
        clock: Clock,
        rng: random.Random,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.clock = clock
        self._rng = rng
        self._bots: dict[int, _Bot] = {}
        self._tokens: dict[str, int] = {}
        self.chats = chats.ChatBook(clock=clock)
        self.roster = membership.Roster()
        self.forums = forum.Forums()
        self.topic_limit = forum.CreationLimit()
        self.files = media.Files(rng)
        self.callbacks = callbacks.Queries(rng)
        self.business = business.Connections(clock=clock, rng=rng)
        self.flood = (
            flood.FloodControl() if monotonic is None else flood.FloodControl(monotonic=monotonic)
        )
        self._seq = itertools.count(1)

    # Bots

    def create_bot(self, username: str, *, first_name: str | None = None) -> BotRecord:
        """A new bot with a fresh 10-digit id, or the existing one with that username."""
        for bot in self._bots.values():
            if bot.record.username.lower() == username.lower():
                return bot.record
        bot_id = self._rng.randrange(1_000_000_000, 10_000_000_000)
        while bot_id in self._bots:
            bot_id = self._rng.randrange(1_000_000_000, 10_000_000_000)
        record = BotRecord(
            id=bot_id,
            username=username,
            first_name=first_name or username.removesuffix("_bot").removesuffix("bot") or username,
            token=_new_token(bot_id),
        )
        self._bots[bot_id] = _Bot(
            record=record, next_update_id=self._rng.randrange(100_000_000, 900_000_000)
        )
        self._tokens[record.token] = bot_id
        return record

    def bot(self, bot_id: int) -> BotRecord:
        return self._bot(bot_id).record

    def bots(self) -> list[BotRecord]:
        return [bot.record for bot in self._bots.values()]

    def authenticate(self, token: str) -> BotRecord:
        """The bot a token belongs to; 404 for a malformed token, 401 for a dead one."""
        if not TOKEN_SHAPE.fullmatch(token):
            raise errors.not_found()
        bot_id = self._tokens.get(token)
        if bot_id is None or self._bots[bot_id].record.revoked:
            raise errors.unauthorized()
        return self._bots[bot_id].record

    def revoke(self, bot_id: int) -> BotRecord:
        """Every call with the bot's token now answers 401."""
        bot = self._bot(bot_id)
        bot.record = replace(bot.record, revoked=True)
        return bot.record

    def rotate_token(self, bot_id: int) -> BotRecord:
        """A new token for the same bot; the old one answers 401 from now on."""
        bot = self._bot(bot_id)
        del self._tokens[bot.record.token]
        bot.record = replace(bot.record, token=_new_token(bot_id), revoked=False)
        self._tokens[bot.record.token] = bot_id
        return bot.record

    # Webhook

    def webhook_of(self, bot_id: int) -> WebhookConfig | None:
        bot = self._bot(bot_id)
        if bot.webhook is None:
            return None
        return replace(bot.webhook, allowed_updates=bot.allowed_updates)

    def set_webhook(
        self,
        bot_id: int,
        *,
        url: str,
        secret_token: str | None,
        max_connections: int,
        drop_pending_updates: bool,
    ) -> bool:
        """Point the bot at a webhook; True when this changed anything."""
        bot = self._bot(bot_id)
        hook = WebhookConfig(url=url, secret_token=secret_token, max_connections=max_connections)
        changed = hook != bot.webhook
        if changed:
            bot.webhook = hook
            bot.last_error_date = bot.last_error_message = None
        if drop_pending_updates:
            bot.pending.clear()
        return changed

    def delete_webhook(self, bot_id: int, *, drop_pending_updates: bool) -> bool:
        """Back to getUpdates; undelivered updates stay unless dropped. True if one was set."""
        bot = self._bot(bot_id)
        had = bot.webhook is not None
        bot.webhook = None
        bot.last_error_date = bot.last_error_message = None
        if drop_pending_updates:
            bot.pending.clear()
        return had

    def webhook_info(self, bot_id: int) -> dict[str, Any]:
        """getWebhookInfo's result, keys in Telegram's order."""
        bot = self._bot(bot_id)
        info: dict[str, Any] = {
            "url": bot.webhook.url if bot.webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.pending),
        }
        if bot.webhook is None:
            return info
        host = urlsplit(bot.webhook.url).hostname or ""
        with contextlib.suppress(ValueError):
            # Telegram reports the address it connects to; the emulator knows only literal ones.
            info["ip_address"] = str(ipaddress.ip_address(host))
        if bot.last_error_date is not None:
            info["last_error_date"] = bot.last_error_date
            info["last_error_message"] = bot.last_error_message
        info["max_connections"] = bot.webhook.max_connections
        if bot.allowed_updates is not None:
            info["allowed_updates"] = list(bot.allowed_updates)
        return info

    def record_webhook_error(self, bot_id: int, message: str) -> None:
        bot = self._bot(bot_id)
        bot.last_error_date = self.clock.timestamp()
        bot.last_error_message = message

    def set_allowed_updates(self, bot_id: int, allowed: tuple[str, ...] | None) -> None:
        self._bot(bot_id).allowed_updates = allowed

    # Updates

    def enqueue(self, bot_id: int, update: Mapping[str, Any]) -> dict[str, Any]:
        """Queue an update for the bot, numbering it unless it has an update_id.

        An update of a kind the bot's allowed_updates excludes is never created, as on
        Telegram: it comes back without an update_id and nothing is queued.
        """
        bot = self._bot(bot_id)
        body = dict(update)
        chat = updates.chat_of(body)
        if chat is not None and isinstance(chat.get("id"), int):
            self.chats.note(chat)
            bot.known_chats.add(chat["id"])
            self._track_membership(bot_id, body, chat["id"])
        if not updates.is_allowed(updates.kind_of(body), bot.allowed_updates):
            body.pop("update_id", None)
            return body
        given = body.pop("update_id", None)
        if isinstance(given, int) and not isinstance(given, bool):
            body = {"update_id": given, **body}
            bot.next_update_id = max(bot.next_update_id, given + 1)
        else:
            body = {"update_id": bot.next_update_id, **body}
            bot.next_update_id += 1
        seq = next(self._seq)
        bot.pending[seq] = PendingUpdate(seq=seq, body=body)
        return body

    def take(self, bot_id: int, *, offset: int, limit: int) -> list[dict[str, Any]]:
        """getUpdates: confirm what `offset` says is done, then the next `limit` updates.

        A positive offset forgets every update below it; a negative one keeps only the last
        `-offset` updates and forgets the rest.
        """
        bot = self._bot(bot_id)
        if offset > 0:
            for seq in [s for s, p in bot.pending.items() if p.update_id < offset]:
                del bot.pending[seq]
        elif offset < 0:
            for seq in list(bot.pending)[:offset]:
                del bot.pending[seq]
        return [p.body for p in itertools.islice(bot.pending.values(), limit)]

    def pending(self, bot_id: int) -> list[PendingUpdate]:
        """Updates not yet confirmed by getUpdates nor acknowledged by the webhook, oldest first."""
        return list(self._bot(bot_id).pending.values())

    def pending_after(self, bot_id: int, seq: int) -> list[PendingUpdate]:
        """Pending updates queued after `seq`, oldest first (cheap: walks from the newest)."""
        newer: list[PendingUpdate] = []
        for pending in reversed(self._bot(bot_id).pending.values()):
            if pending.seq <= seq:
                break
            newer.append(pending)
        newer.reverse()
        return newer

    def is_pending(self, bot_id: int, seq: int) -> bool:
        return seq in self._bot(bot_id).pending

    def acknowledge(self, bot_id: int, seq: int) -> None:
        """The webhook answered 2xx: the update is delivered."""
        self._bot(bot_id).pending.pop(seq, None)

    # Chats and messages

    def chat(self, chat_id: int) -> dict[str, Any] | None:
        return self.chats.get(chat_id)

    def user_message(
        self,
        bot_id: int,
        user: objects.User,
        chat: objects.Chat,
        content: Mapping[str, Any],
        *,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """A user writes in a chat the bot is in; returns the Updates as queued.

        `content` is the message's text and entities, or its media and caption. Writing to
        a bot one blocked unblocks it first (Telegram's "Restart" button), so the bot then
        gets `my_chat_member` before the message.
        """
        self._bot(bot_id)
        objects.check_sender(user, chat)
        if self.chats.migrated_to(chat.id) is not None:
            raise errors.InvalidPayload(f"chat {chat.id} was upgraded to a supergroup")
        stored = self.chats.note(chat.to_json())
        sender = user.to_json()
        self.chats.note_user(sender)
        queued = []
        status = self.roster.status(chat.id, bot_id)
        if chat.type == "private" and status is membership.Status.KICKED:
            queued.append(
                self.change_status(bot_id, stored, actor=sender, new=membership.Status.MEMBER)
            )
        elif status is not None and not status.is_in:
            raise errors.InvalidPayload(f"bot {bot_id} is not a member of chat {chat.id}")
        reply_to = None
        if message_thread_id is not None:
            reply_to = self._topic_root(bot_id, stored, message_thread_id, register=True)
        if reply_to_message_id is not None:
            reply_to = self.chats.message(bot_id, stored, reply_to_message_id)
            if reply_to is None:
                raise errors.InvalidPayload(f"no message {reply_to_message_id} in chat {chat.id}")
        message = self.chats.post(
            bot_id,
            stored,
            sender=sender,
            content=content,
            message_thread_id=message_thread_id,
            reply_to_message=reply_to,
        )
        queued.append(self.enqueue(bot_id, {"message": copy.deepcopy(message)}))
        return queued

    def change_status(
        self,
        bot_id: int,
        chat: dict[str, Any],
        *,
        actor: Mapping[str, Any],
        new: membership.Status,
        withheld: frozenset[str] = membership.NO_RIGHTS_WITHHELD,
    ) -> dict[str, Any]:
        """Set the bot's status in a chat (an administrator's rights but those `withheld`)
        and queue the `my_chat_member` saying so."""
        old_withheld = self.roster.withheld(chat["id"], bot_id)
        old = self.roster.set(chat["id"], bot_id, new, withheld=withheld)
        body = membership.chat_member_updated(
            chat=chat,
            actor=actor,
            date=self.clock.timestamp(),
            user=self.bot(bot_id).user_json(),
            old=old,
            new=new,
            old_withheld=old_withheld,
            new_withheld=self.roster.withheld(chat["id"], bot_id),
        )
        return self.enqueue(bot_id, {"my_chat_member": body})

    def bot_message(
        self,
        bot_id: int,
        chat_id: int | str,
        content: Mapping[str, Any],
        *,
        reply_markup: dict[str, Any] | None = None,
        link_preview_options: dict[str, Any] | None = None,
        message_thread_id: int | None = None,
        reply_to_message_id: int | None = None,
        allow_sending_without_reply: bool = False,
    ) -> dict[str, Any]:
        """sendMessage, sendPhoto and the like: the bot posts `content` (text and entities,
        or media and caption) in a chat it may write in; returns the Message."""
        bot = self._bot(bot_id)
        chat = self.resolve_chat(bot_id, chat_id)
        # Outside forums Telegram ignores message_thread_id.
        thread_id = message_thread_id if chat.get("is_forum") else None
        replied = None
        if thread_id is not None:
            replied = self._topic_root(bot_id, chat, thread_id, register=False)
            topic = self.forums.get(chat["id"], thread_id)
            if topic is not None and topic.is_closed and not self.manages_topics(bot_id, chat):
                raise errors.bad_request("TOPIC_CLOSED")
        if reply_to_message_id:
            replied = self.chats.message(bot_id, chat, reply_to_message_id)
            if replied is None and not allow_sending_without_reply:
                raise errors.bad_request("message to be replied not found")
        self.flood.check(bot_id, chat["id"])
        message = self.chats.post(
            bot_id,
            chat,
            sender=bot.record.user_json(),
            content=content,
            message_thread_id=thread_id,
            reply_to_message=replied,
            link_preview_options=link_preview_options,
            # Telegram echoes inline keyboards with the message, never other keyboards.
            reply_markup=reply_markup
            if reply_markup and "inline_keyboard" in reply_markup
            else None,
        )
        self.flood.record(bot_id, chat["id"])
        self.chats.record_sent(bot_id, message)
        return message

    def manages_topics(self, bot_id: int, chat: Mapping[str, Any]) -> bool:
        """Whether the bot may open, edit, close and reopen topics (and write in closed ones):
        an administrator with `can_manage_topics`."""
        return self.roster.may(chat["id"], bot_id, "can_manage_topics")

    def sent_messages(self, chat_id: int, *, bot_id: int | None = None) -> list[dict[str, Any]]:
        """Messages bots sent to a chat through the Bot API, in send order."""
        return self.chats.sent(chat_id, bot_id=bot_id)

    def resolve_chat(self, bot_id: int, chat_id: int | str) -> dict[str, Any]:
        """The chat a bot means by `chat_id` (an id or `@username`) if it may write there.

        400 for a chat it does not know or one upgraded to a supergroup, 403 for one it is
        not in (or a user who blocked it).
        """
        bot = self._bot(bot_id)
        if isinstance(chat_id, str):
            chat = self.chats.public(chat_id, bot.known_chats)
        else:
            chat = self.chats.get(chat_id)
            # Groups exist for every bot; a private chat only once its user wrote to the bot.
            if chat is not None and chat["type"] == "private" and chat_id not in bot.known_chats:
                chat = None
        if chat is None:
            raise errors.bad_request("chat not found")
        new_id = self.chats.migrated_to(chat["id"])
        if new_id is not None:
            raise errors.bad_request(
                "group chat was upgraded to a supergroup chat", {"migrate_to_chat_id": new_id}
            )
        refusal = membership.send_refusal(chat["type"], self.roster.status(chat["id"], bot_id))
        if refusal is not None:
            raise refusal
        return chat

    def _topic_root(
        self, bot_id: int, chat: dict[str, Any], message_thread_id: int, *, register: bool
    ) -> dict[str, Any] | None:
        """The message that opened a topic: Telegram shows it as what topic messages reply to.

        A user may write in a topic the emulator has not seen opened (`register`); it is
        remembered with a made-up name and has no opening message.
        """
        if not chat.get("is_forum"):
            raise errors.InvalidPayload("message_thread_id is for forum supergroups only")
        if register and self.forums.get(chat["id"], message_thread_id) is None:
            self.forums.add(
                chat["id"],
                forum.Topic(
                    message_thread_id=message_thread_id,
                    name=f"Topic {message_thread_id}",
                    icon_color=forum.default_icon_color(message_thread_id),
                ),
            )
        if self.forums.get(chat["id"], message_thread_id) is None:
            raise errors.bad_request("message thread not found")
        return self.chats.message(bot_id, chat, message_thread_id)

    def _track_membership(self, bot_id: int, update: Mapping[str, Any], chat_id: int) -> None:
        """An update shows the bot in a chat: a `my_chat_member` about it sets its status,
        anything else makes it a member if it had no status there."""
        new = (update.get("my_chat_member") or {}).get("new_chat_member") or {}
        about_bot = isinstance(new, Mapping) and (new.get("user") or {}).get("id") == bot_id
        if about_bot and new.get("status") in set(membership.Status):
            withheld = frozenset(name for name in membership.ADMIN_RIGHTS if new.get(name) is False)
            self.roster.set(chat_id, bot_id, membership.Status(new["status"]), withheld=withheld)
        else:
            self.roster.admit(chat_id, bot_id)

    def knows_chat(self, bot_id: int, chat_id: int) -> bool:
        """Whether the bot has had an update from this chat."""
        return chat_id in self._bot(bot_id).known_chats

    def new_chat_id(self, chat_type: str) -> int:
        """An unused id shaped as Telegram shapes them: -4xxxxxxxxx for a basic group,
        -100xxxxxxxxxx for a supergroup or channel."""
        while True:
            if chat_type == "group":
                chat_id = -self._rng.randrange(4_000_000_000, 5_000_000_000)
            else:
                chat_id = -(10**12 + self._rng.randrange(1_000_000_000, 10_000_000_000))
            if self.chats.get(chat_id) is None:
                return chat_id

    def _bot(self, bot_id: int) -> _Bot:
        try:
            return self._bots[bot_id]
        except KeyError:
            raise errors.UnknownBot(bot_id) from None


def _new_token(bot_id: int) -> str:
    secret = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_SECRET_LENGTH))
    return f"{bot_id}:{secret}"
