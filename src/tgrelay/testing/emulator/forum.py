"""Forum topics: the threads of a supergroup with topics enabled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The only icon colours the Bot API offers for new topics (createForumTopic).
ICON_COLORS: tuple[int, ...] = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)


@dataclass(frozen=True, kw_only=True)
class Topic:
    """A forum topic; its thread id is the id of the message that opened it."""

    message_thread_id: int
    name: str
    icon_color: int

    def to_json(self) -> dict[str, Any]:
        """The ForumTopic object createForumTopic answers."""
        return {
            "message_thread_id": self.message_thread_id,
            "name": self.name,
            "icon_color": self.icon_color,
        }

    def created_json(self) -> dict[str, Any]:
        """The `forum_topic_created` field of the service message that opens the topic."""
        return {"name": self.name, "icon_color": self.icon_color}


def default_icon_color(message_thread_id: int) -> int:
    """Telegram picks a colour when none is asked for; the emulator picks one repeatably."""
    return ICON_COLORS[message_thread_id % len(ICON_COLORS)]


class Forums:
    """Topics by chat and thread id."""

    def __init__(self) -> None:
        self._topics: dict[int, dict[int, Topic]] = {}

    def add(self, chat_id: int, topic: Topic) -> None:
        self._topics.setdefault(chat_id, {})[topic.message_thread_id] = topic

    def get(self, chat_id: int, message_thread_id: int) -> Topic | None:
        return self._topics.get(chat_id, {}).get(message_thread_id)

    def of_chat(self, chat_id: int) -> list[Topic]:
        return list(self._topics.get(chat_id, {}).values())
