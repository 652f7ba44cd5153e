"""Chats the emulated Telegram knows, and the messages written in them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tgrelay.testing.clock import Clock


@dataclass(kw_only=True)
class _Conversation:
    next_message_id: int = 1
    # Messages by id as they now are (edits change them in place).
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)


class ChatBook:
    """Chat objects by id, message numbering per conversation, and what bots sent."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._chats: dict[int, dict[str, Any]] = {}
        # Chats made through the control surface: their shape is not rewritten by updates.
        self._managed: set[int] = set()
        # Basic groups upgraded to supergroups: old id -> new id.
        self._migrated_to: dict[int, int] = {}
        self._users: dict[int, dict[str, Any]] = {}
        # A private chat is one conversation per (user, bot); a group one for all its bots.
        self._conversations: dict[tuple[int, int | None], _Conversation] = {}
        self._sent: list[tuple[int, dict[str, Any]]] = []  # (bot id, message) in send order

    def note(self, chat: Mapping[str, Any]) -> dict[str, Any]:
        """Remember a chat as an update shows it: the latest word wins, unless it is managed."""
        if chat["id"] in self._managed:
            return self._chats[chat["id"]]
        stored = dict(chat)
        self._chats[stored["id"]] = stored
        return stored

    def create(self, chat: Mapping[str, Any]) -> dict[str, Any]:
        """A chat the control surface made; updates do not reshape it."""
        stored = dict(chat)
        self._chats[stored["id"]] = stored
        self._managed.add(stored["id"])
        return stored

    def get(self, chat_id: int) -> dict[str, Any] | None:
        return self._chats.get(chat_id)

    def migrate(self, old_id: int, new_chat: Mapping[str, Any]) -> dict[str, Any]:
        """The basic group `old_id` lives on as the supergroup `new_chat`."""
        self._migrated_to[old_id] = new_chat["id"]
        return self.create(new_chat)

    def migrated_to(self, chat_id: int) -> int | None:
        return self._migrated_to.get(chat_id)

    def note_user(self, user: Mapping[str, Any]) -> None:
        self._users[user["id"]] = dict(user)

    def user(self, user_id: int) -> dict[str, Any] | None:
        """The user as their latest message showed them."""
        return self._users.get(user_id)

    def public(self, username: str, among: Iterable[int]) -> dict[str, Any] | None:
        """The group or channel with this @username among some chat ids (private chats never)."""
        name = username.removeprefix("@").lower()
        for chat_id in among:
            chat = self._chats[chat_id]
            if chat["type"] != "private" and str(chat.get("username", "")).lower() == name:
                return chat
        return None

    def message(
        self, bot_id: int, chat: Mapping[str, Any], message_id: int
    ) -> dict[str, Any] | None:
        """A message of the conversation the bot sees in this chat, without the message it
        replies to (Telegram nests replies one level): fit to be a reply_to_message."""
        message = self._conversation(bot_id, chat).messages.get(message_id)
        if message is None:
            return None
        return {key: value for key, value in message.items() if key != "reply_to_message"}

    def full_message(
        self, bot_id: int, chat: Mapping[str, Any], message_id: int
    ) -> dict[str, Any] | None:
        """A message of the conversation as it now is, reply_to_message included (shared:
        callers copy before handing it out)."""
        return self._conversation(bot_id, chat).messages.get(message_id)

    def next_message_id(self, bot_id: int, chat: Mapping[str, Any]) -> int:
        """The id the conversation's next message will get."""
        return self._conversation(bot_id, chat).next_message_id

    def post(
        self,
        bot_id: int,
        chat: dict[str, Any],
        *,
        sender: dict[str, Any],
        content: Mapping[str, Any],
        message_thread_id: int | None = None,
        reply_to_message: dict[str, Any] | None = None,
        link_preview_options: dict[str, Any] | None = None,
        reply_markup: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new message in the chat, numbered after the conversation's last, dated now.

        `content` is what the message carries: `text` and `entities`, or a media field with
        its `caption` and `caption_entities`.
        """
        message = self._new(bot_id, chat, sender, message_thread_id=message_thread_id)
        if reply_to_message is not None:
            message["reply_to_message"] = reply_to_message
        message.update({key: value for key, value in content.items() if value})
        if link_preview_options is not None:
            message["link_preview_options"] = link_preview_options
        if reply_markup is not None:
            message["reply_markup"] = reply_markup
        return self._keep(bot_id, chat, message)

    def service(
        self,
        bot_id: int,
        chat: dict[str, Any],
        *,
        sender: dict[str, Any],
        content: Mapping[str, Any],
        sender_chat: dict[str, Any] | None = None,
        message_thread_id: int | None = None,
    ) -> dict[str, Any]:
        """A service message (members joined or left, the group migrated, a topic opened).

        `sender_chat` is the group itself when an anonymous admin acted.
        """
        message = self._new(
            bot_id, chat, sender, sender_chat=sender_chat, message_thread_id=message_thread_id
        )
        message.update(content)
        return self._keep(bot_id, chat, message)

    def _new(
        self,
        bot_id: int,
        chat: dict[str, Any],
        sender: dict[str, Any],
        *,
        sender_chat: dict[str, Any] | None = None,
        message_thread_id: int | None,
    ) -> dict[str, Any]:
        conversation = self._conversation(bot_id, chat)
        message_id = conversation.next_message_id
        conversation.next_message_id += 1
        # Keys in Telegram's order.
        message: dict[str, Any] = {"message_id": message_id}
        if message_thread_id is not None:
            message["message_thread_id"] = message_thread_id
        message["from"] = sender
        if sender_chat is not None:
            message["sender_chat"] = sender_chat
        message.update({"chat": chat, "date": self._clock.timestamp()})
        if message_thread_id is not None:
            message["is_topic_message"] = True
        return message

    def _keep(
        self, bot_id: int, chat: Mapping[str, Any], message: dict[str, Any]
    ) -> dict[str, Any]:
        # Kept whole: edits change this very dict, so the sent list shows them too.
        self._conversation(bot_id, chat).messages[message["message_id"]] = message
        return message

    def edit(
        self, bot_id: int, chat: Mapping[str, Any], message_id: int, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Change a kept message in place (a None value removes the field) and date the edit.

        Returns the message as it now is, with its reply_to_message.
        """
        message = self._conversation(bot_id, chat).messages[message_id]
        edited: dict[str, Any] = {}
        for key, value in message.items():
            if key in changes or key in {"edit_date", "reply_markup"}:
                continue
            edited[key] = value
            if key == "date":
                edited["edit_date"] = self._clock.timestamp()
        edited.update({k: v for k, v in changes.items() if v is not None and k != "reply_markup"})
        markup = (
            changes["reply_markup"] if "reply_markup" in changes else message.get("reply_markup")
        )
        if markup is not None:
            edited["reply_markup"] = markup
        message.clear()
        message.update(edited)
        return message

    def record_sent(self, bot_id: int, message: dict[str, Any]) -> None:
        self._sent.append((bot_id, message))

    def sent(self, chat_id: int, *, bot_id: int | None = None) -> list[dict[str, Any]]:
        """Messages bots sent to a chat through the Bot API, in send order."""
        return [
            message
            for sender, message in self._sent
            if message["chat"]["id"] == chat_id and bot_id in (None, sender)
        ]

    def _conversation(self, bot_id: int, chat: Mapping[str, Any]) -> _Conversation:
        key = (chat["id"], bot_id if chat["type"] == "private" else None)
        return self._conversations.setdefault(key, _Conversation())
