"""Telegram Business: accounts that connect a bot, their customers' chats, and sending as them.

A business account (a user) connects a bot: the bot gets `business_connection` (a
BusinessConnection: id, user, user_chat_id, date, rights, is_enabled). Customers who write
to the account reach the bot as `business_message`, edits as `edited_business_message`,
deletions as `deleted_business_messages`, each with the connection's id. Sending with
`business_connection_id` (sendMessage, sendPhoto & co.) posts in the account's chat with
the customer, `from` the account and `sender_business_bot` the bot. Telegram's refusals:
an unknown or removed connection "BUSINESS_CONNECTION_INVALID", a disabled one or one
without `can_reply` "BUSINESS_CONNECTION_NOT_ALLOWED", a customer the account has no chat
with "chat not found". copyMessage takes no business_connection_id (Telegram ignores it).
"""

from __future__ import annotations

import copy
import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import errors, objects
from tgrelay.testing.emulator.calls import Call

_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
# What a connection's bot may do unless the account says otherwise (Telegram's defaults
# when a user connects a bot in Settings → Business → Chatbots with replies allowed).
DEFAULT_RIGHTS: dict[str, bool] = {"can_reply": True, "can_read_messages": True}


@dataclass
class _Chat:
    customer: dict[str, Any]
    chat: dict[str, Any]
    next_message_id: int = 1
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Connection:
    """One account's connection to one bot, and the chats it relays."""

    id: str
    bot_id: int
    user: dict[str, Any]
    date: int
    is_enabled: bool
    rights: dict[str, bool]
    removed: bool = False
    chats: dict[int, _Chat] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The BusinessConnection (can_reply kept for clients that still read it)."""
        body: dict[str, Any] = {
            "id": self.id,
            "user": self.user,
            "user_chat_id": self.user["id"],
            "date": self.date,
            "can_reply": bool(self.rights.get("can_reply")),
            "is_enabled": self.is_enabled,
        }
        rights = {name: True for name, granted in self.rights.items() if granted}
        if rights:
            body["rights"] = rights
        return body

    @property
    def may_reply(self) -> bool:
        return self.is_enabled and not self.removed and bool(self.rights.get("can_reply"))


class Connections:
    """Every business connection, by id; one per (account, bot)."""

    def __init__(self, *, clock: Clock, rng: random.Random) -> None:
        self._clock = clock
        self._rng = rng
        self._by_id: dict[str, Connection] = {}

    def connect(
        self,
        bot_id: int,
        account: Mapping[str, Any],
        *,
        rights: Mapping[str, bool] | None = None,
        is_enabled: bool = True,
    ) -> Connection:
        """The account connects the bot (again: same id, new rights and state)."""
        user = objects.parse_user(account).to_json()
        wanted = dict(DEFAULT_RIGHTS if rights is None else rights)
        for known in self._by_id.values():
            if known.bot_id == bot_id and known.user["id"] == user["id"]:
                known.rights, known.is_enabled, known.removed = wanted, is_enabled, False
                known.date = self._clock.timestamp()
                return known
        connection_id = "".join(self._rng.choice(_ID_ALPHABET) for _ in range(24))
        made = Connection(
            id=connection_id,
            bot_id=bot_id,
            user=user,
            date=self._clock.timestamp(),
            is_enabled=is_enabled,
            rights=wanted,
        )
        self._by_id[connection_id] = made
        return made

    def get(self, connection_id: str) -> Connection:
        """A connection the control surface names, or InvalidPayload."""
        found = self._by_id.get(connection_id)
        if found is None:
            raise errors.InvalidPayload(f"no business connection {connection_id!r}")
        return found

    def change(
        self,
        connection_id: str,
        *,
        is_enabled: bool | None = None,
        rights: Mapping[str, bool] | None = None,
        removed: bool = False,
    ) -> Connection:
        """The account pauses, resumes, changes rights or removes the bot."""
        found = self.get(connection_id)
        if found.removed:
            raise errors.InvalidPayload(f"business connection {connection_id!r} was removed")
        if is_enabled is not None:
            found.is_enabled = is_enabled
        if rights is not None:
            found.rights = dict(rights)
        if removed:
            found.removed, found.is_enabled = True, False
        found.date = self._clock.timestamp()
        return found

    def customer_writes(
        self, connection_id: str, customer: Mapping[str, Any], content: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A customer's message in their chat with the account; returns the Message."""
        found = self.get(connection_id)
        if found.removed:
            raise errors.InvalidPayload(f"business connection {connection_id!r} was removed")
        user = objects.parse_user(customer)
        if user.id == found.user["id"]:
            raise errors.InvalidPayload("the account does not write to itself")
        sender = user.to_json()
        chat = found.chats.get(user.id)
        if chat is None:
            shaped = objects.private_chat_of(user).to_json()
            chat = found.chats[user.id] = _Chat(customer=sender, chat=shaped)
        return self._post(found, chat, sender, content)

    def account_writes(
        self, connection_id: str, chat_id: int, content: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The account's owner writes in a chat from their own app; returns the Message
        (Telegram sends it to the bot as a business_message too, `from` the account)."""
        found = self.get(connection_id)
        chat = found.chats.get(chat_id)
        if chat is None or found.removed:
            raise errors.InvalidPayload(f"no business chat {chat_id}")
        return self._post(found, chat, found.user, content)

    def bot_sends(
        self,
        bot: Mapping[str, Any],
        connection_id: str,
        chat_id: int | str,
        content: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The bot (its User) writes as the account: a send with business_connection_id."""
        found = self._by_id.get(connection_id)
        if found is None or found.bot_id != bot["id"] or found.removed:
            raise errors.bad_request("BUSINESS_CONNECTION_INVALID")
        if not found.may_reply:
            raise errors.bad_request("BUSINESS_CONNECTION_NOT_ALLOWED")
        chat = found.chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None:
            raise errors.bad_request("chat not found")
        message = self._post(found, chat, found.user, content)
        message["sender_business_bot"] = dict(bot)
        return message

    def edit(self, connection_id: str, chat_id: int, message_id: int, text: str) -> dict[str, Any]:
        """The customer edits their text message; returns it as now edited."""
        message = self._customer_message(connection_id, chat_id, message_id)
        if "text" not in message:
            raise errors.InvalidPayload("only text messages are edited here")
        if message["text"] == text:
            raise errors.InvalidPayload("the text is unchanged")
        message["text"], message["edit_date"] = text, self._clock.timestamp()
        message.pop("entities", None)
        return message

    def delete(self, connection_id: str, chat_id: int, message_ids: list[int]) -> dict[str, Any]:
        """Messages deleted from the chat; returns the BusinessMessagesDeleted."""
        found = self.get(connection_id)
        chat = found.chats.get(chat_id)
        if chat is None:
            raise errors.InvalidPayload(f"no business chat {chat_id}")
        for message_id in message_ids:
            if chat.messages.pop(message_id, None) is None:
                raise errors.InvalidPayload(f"no message {message_id} in chat {chat_id}")
        return {
            "business_connection_id": found.id,
            "chat": copy.deepcopy(chat.chat),
            "message_ids": list(message_ids),
        }

    def messages(self, connection_id: str, chat_id: int) -> list[dict[str, Any]]:
        """The chat's messages as they now are, oldest first."""
        chat = self.get(connection_id).chats.get(chat_id)
        return [] if chat is None else copy.deepcopy(list(chat.messages.values()))

    def _customer_message(
        self, connection_id: str, chat_id: int, message_id: int
    ) -> dict[str, Any]:
        chat = self.get(connection_id).chats.get(chat_id)
        message = None if chat is None else chat.messages.get(message_id)
        if message is None or chat is None or message["from"]["id"] != chat.customer["id"]:
            raise errors.InvalidPayload(f"no customer message {message_id} in chat {chat_id}")
        return message

    def _post(
        self,
        connection: Connection,
        chat: _Chat,
        sender: dict[str, Any],
        content: Mapping[str, Any],
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": chat.next_message_id,
            "from": copy.deepcopy(sender),
            "chat": copy.deepcopy(chat.chat),
            "date": self._clock.timestamp(),
            "business_connection_id": connection.id,
        }
        chat.next_message_id += 1
        message.update({key: value for key, value in content.items() if value})
        chat.messages[message["message_id"]] = message
        return message


def send(
    call: Call, connection_id: str, chat_id: int | str, content: Mapping[str, Any]
) -> dict[str, Any]:
    """A Bot API send with business_connection_id: the Message, as the account wrote it."""
    if not connection_id:
        raise errors.bad_request("BUSINESS_CONNECTION_INVALID")
    return call.emulator.state.business.bot_sends(
        call.bot.user_json(), connection_id, chat_id, content
    )
