"""Forum topics: the threads of a supergroup with topics enabled, and how fast they open."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from tgrelay.testing.emulator import errors, flood

# The only icon colours the Bot API offers for new topics (createForumTopic).
ICON_COLORS: tuple[int, ...] = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)


@dataclass(frozen=True, kw_only=True)
class Topic:
    """A forum topic; its thread id is the id of the message that opened it."""

    message_thread_id: int
    name: str
    icon_color: int
    icon_custom_emoji_id: str | None = None
    # Closed topics take messages only from those who manage topics (TOPIC_CLOSED otherwise).
    is_closed: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ForumTopic object createForumTopic answers."""
        shaped: dict[str, Any] = {
            "message_thread_id": self.message_thread_id,
            "name": self.name,
            "icon_color": self.icon_color,
        }
        if self.icon_custom_emoji_id:
            shaped["icon_custom_emoji_id"] = self.icon_custom_emoji_id
        return shaped

    def created_json(self) -> dict[str, Any]:
        """The `forum_topic_created` field of the service message that opens the topic."""
        shaped = {"name": self.name, "icon_color": self.icon_color}
        if self.icon_custom_emoji_id:
            shaped["icon_custom_emoji_id"] = self.icon_custom_emoji_id
        return shaped


def default_icon_color(message_thread_id: int) -> int:
    """Telegram picks a colour when none is asked for; the emulator picks one repeatably."""
    return ICON_COLORS[message_thread_id % len(ICON_COLORS)]


class Forums:
    """Topics by chat and thread id."""

    def __init__(self) -> None:
        self._topics: dict[int, dict[int, Topic]] = {}

    def add(self, chat_id: int, topic: Topic) -> None:
        """Remember a topic, or its new state (same thread id)."""
        self._topics.setdefault(chat_id, {})[topic.message_thread_id] = topic

    def get(self, chat_id: int, message_thread_id: int) -> Topic | None:
        return self._topics.get(chat_id, {}).get(message_thread_id)

    def of_chat(self, chat_id: int) -> list[Topic]:
        return list(self._topics.get(chat_id, {}).values())


class CreationLimit:
    """How many topics a chat may open in a window of the emulator's clock; off by default.

    Telegram limits topic creation per chat (the figure is not published) and answers the
    excess like flood control: 429 with `retry_after`.
    """

    def __init__(self) -> None:
        self.limit: flood.Limit | None = None
        self._opened: dict[int, collections.deque[float]] = {}

    def configure(self, limit: flood.Limit | None) -> None:
        """Set the limit (None: no limit) and forget what was opened so far."""
        self.limit = limit
        self._opened.clear()

    def check(self, chat_id: int, now: float) -> None:
        """Raise Telegram's 429 if the chat may not open one more topic at `now` (seconds)."""
        if self.limit is None:
            return
        wait = flood.wait_for_slot(self._opened.get(chat_id, ()), self.limit, now)
        if wait > 0:
            retry = flood.retry_after(wait)
            raise errors.BotApiError(
                429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
            )

    def record(self, chat_id: int, now: float) -> None:
        opened = self._opened.setdefault(chat_id, collections.deque())
        opened.append(now)
        if self.limit is not None:
            while opened and opened[0] <= now - self.limit.window:
                opened.popleft()

    def as_json(self) -> dict[str, Any] | None:
        if self.limit is None:
            return None
        return {"count": self.limit.count, "window": self.limit.window}
