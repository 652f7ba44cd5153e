"""What a Telegram Business connection's facts mean for the desk: its state, what a refused
send says about it, and how the desk words it. Pure.

    business_connection update ──► state_of(is_enabled, can_reply)
        is_enabled false ──► disabled   (paused or removed: Telegram says both the same way)
        no can_reply     ──► cannot_reply
        else             ──► active
    a reply refused ──► after_refusal(state, reason)
        BUSINESS_CONNECTION_INVALID     ──► removed (Telegram knows the id no more)
        BUSINESS_CONNECTION_NOT_ALLOWED ──► cannot_reply, unless already disabled or removed
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tgrelay.support.models import BusinessConnection, ConnectionState

# Telegram's refusals of a send with business_connection_id (MTProto's names, passed on).
INVALID = "BUSINESS_CONNECTION_INVALID"
NOT_ALLOWED = "BUSINESS_CONNECTION_NOT_ALLOWED"

CHANNEL = "via Business: {account}"
STATE_WORDS = {
    ConnectionState.ACTIVE: "replies go out as the account",
    ConnectionState.CANNOT_REPLY: "the account does not let the bot reply",
    ConnectionState.DISABLED: "the account paused or removed the bot",
    ConnectionState.REMOVED: "the account removed the bot",
}
WARNING = "⚠️ Replies cannot reach the customer: {words}."
REFUSED = "the business account {account} {what} ({reason})"
REFUSED_WHAT = {
    ConnectionState.REMOVED: "removed the bot's connection",
    ConnectionState.CANNOT_REPLY: "does not let the bot reply (paused, or the right withheld)",
    ConnectionState.DISABLED: "paused or removed the bot's connection",
}


def state_of(*, is_enabled: bool, can_reply: bool) -> ConnectionState:
    """A connection's state as a business_connection update tells it."""
    if not is_enabled:
        return ConnectionState.DISABLED
    return ConnectionState.ACTIVE if can_reply else ConnectionState.CANNOT_REPLY


def can_reply_of(body: Mapping[str, Any]) -> bool:
    """The right to reply of a BusinessConnection: `rights.can_reply` (Bot API 9), else the
    deprecated top-level `can_reply` that older payloads carry alone."""
    rights = body.get("rights")
    if isinstance(rights, Mapping):
        return bool(rights.get("can_reply"))
    return bool(body.get("can_reply"))


def after_refusal(state: ConnectionState, reason: str) -> ConnectionState | None:
    """The state a refused send reveals; None when the refusal is not the connection's."""
    if INVALID in reason:
        return ConnectionState.REMOVED
    if NOT_ALLOWED in reason:
        if state in (ConnectionState.DISABLED, ConnectionState.REMOVED):
            return state
        return ConnectionState.CANNOT_REPLY
    return None


def refusal_words(connection: BusinessConnection, state: ConnectionState, reason: str) -> str:
    """Why a reply did not reach the customer, for the topic and the message's relay_error."""
    what = REFUSED_WHAT.get(state, STATE_WORDS[state])
    return REFUSED.format(account=connection.account.name, what=what, reason=reason)


def header_lines(connection: BusinessConnection | None) -> list[str]:
    """What a business ticket's header says of its channel, with a warning when replies
    cannot go out through it (a connection the desk never recorded counts as gone)."""
    if connection is None:
        return ["Channel: via Business (an unknown connection)", WARNING.format(words="unknown")]
    lines = [f"Channel: {CHANNEL.format(account=connection.account.name)}"]
    if connection.state is not ConnectionState.ACTIVE:
        lines.append(WARNING.format(words=STATE_WORDS[connection.state]))
    return lines
