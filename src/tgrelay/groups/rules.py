"""Pure decisions of group linking and alerting; the clock is always passed in."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tgrelay.groups.models import OPEN_STATES, SessionState

# Telegram's limit on a message's text, after entities are parsed (Bot API, sendMessage).
MESSAGE_LIMIT = 4096
# Deep-link payloads may hold up to 64 characters of A-Za-z0-9_- (Bot API, "Deep linking").
# Ours are exactly TOKEN_LENGTH of them, so a bot's other /start payloads (the team's own deep
# links) are left alone rather than answered as invalid connect links.
TOKEN_LENGTH = 32
TOKEN_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}")
_START = re.compile(r"^/start(?:@(?P<bot>[A-Za-z0-9_]+))?(?:\s+(?P<payload>\S+))?\s*$")

# Member statuses in which the bot is in the chat (ChatMember.status).
_PRESENT = frozenset({"creator", "administrator", "member", "restricted"})


@dataclass(frozen=True, kw_only=True)
class StartCommand:
    """`/start <payload>` as sent in a chat; `bot` is set for `/start@bot` in groups."""

    bot: str | None
    payload: str | None


# A message's fields the groups domain acts on: the bot's membership and chat migrations.
_SERVICE_FIELDS = frozenset(
    {
        "migrate_to_chat_id",
        "migrate_from_chat_id",
        "new_chat_members",
        "new_chat_member",
        "new_chat_participant",
        "left_chat_member",
    }
)


def concerns_groups(message: Mapping[str, Any]) -> bool:
    """Whether a message (as Telegram sent it) may concern the groups domain: one of those
    service fields, or a /start command. Only these need aiogram's typed parse."""
    if not _SERVICE_FIELDS.isdisjoint(message):
        return True
    text = message.get("text")
    return isinstance(text, str) and parse_start(text) is not None


def parse_start(text: str | None) -> StartCommand | None:
    """The /start command in a message's text, or None when the text is something else."""
    if not text:
        return None
    match = _START.match(text.strip())
    if match is None:
        return None
    return StartCommand(bot=match["bot"], payload=match["payload"])


def is_token(payload: str | None) -> bool:
    """Whether a /start payload has the shape of a connect-session token."""
    return payload is not None and TOKEN_PATTERN.fullmatch(payload) is not None


def effective_state(state: SessionState, expires_at: datetime, now: datetime) -> SessionState:
    """A session still waiting after its expiry is expired, whether or not a job noticed."""
    if state in OPEN_STATES and now >= expires_at:
        return SessionState.EXPIRED
    return state


def bot_joined(old_status: str, new_status: str, *, new_is_member: bool | None = None) -> bool:
    """A my_chat_member change that brings the bot into the chat."""
    return not _present(old_status, None) and _present(new_status, new_is_member)


def bot_left(old_status: str, new_status: str, *, new_is_member: bool | None = None) -> bool:
    """A my_chat_member change that takes the bot out of the chat (left or kicked)."""
    return _present(old_status, None) and not _present(new_status, new_is_member)


def _present(status: str, is_member: bool | None) -> bool:
    # A restricted member is in the chat only while is_member says so.
    if status == "restricted":
        return is_member is not False
    return status in _PRESENT


class Addition(enum.StrEnum):
    """What phase 2 makes of the bot being added to a group."""

    CONNECT = "connect"  # the verified user added it after phase 2 began
    OTHER_USER = "other_user"  # someone else added it: ignored, audited
    STALE = "stale"  # the addition happened before phase 2 began: ignored, audited


def judge_addition(
    *, verified_user_id: int, group_started_at: datetime, actor_id: int, added_at: datetime
) -> Addition:
    """Phase 2's rule. Telegram dates have whole seconds, so the start is compared truncated."""
    if actor_id != verified_user_id:
        return Addition.OTHER_USER
    if added_at < group_started_at.replace(microsecond=0):
        return Addition.STALE
    return Addition.CONNECT


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split a text into messages of at most `limit` characters, on line boundaries when
    possible; a single line longer than the limit is cut at the limit."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            parts.append(current)
            current = ""
        current += line
    if current:
        parts.append(current)
    # A newline that ended a part carries no meaning in a message of its own.
    return [part.rstrip("\n") or part for part in parts]
