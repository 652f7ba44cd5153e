"""The pure rules of a Telegram Business connection: its state from an update, what a
refused send reveals, the right to reply in either payload shape."""

from __future__ import annotations

from typing import Any

import pytest

from tgrelay.support import business_rules
from tgrelay.support.models import ConnectionState

INVALID = "Bad Request: BUSINESS_CONNECTION_INVALID"
NOT_ALLOWED = "Bad Request: BUSINESS_CONNECTION_NOT_ALLOWED"


@pytest.mark.parametrize(
    ("is_enabled", "can_reply", "state"),
    [
        (True, True, ConnectionState.ACTIVE),
        (True, False, ConnectionState.CANNOT_REPLY),
        (False, True, ConnectionState.DISABLED),
        (False, False, ConnectionState.DISABLED),
    ],
)
def test_state_of_an_update(is_enabled: bool, can_reply: bool, state: ConnectionState) -> None:
    """A disabled connection is disabled whatever its rights; an enabled one replies or not."""
    assert business_rules.state_of(is_enabled=is_enabled, can_reply=can_reply) is state


@pytest.mark.parametrize(
    ("state", "reason", "after"),
    [
        (ConnectionState.ACTIVE, INVALID, ConnectionState.REMOVED),
        (ConnectionState.DISABLED, INVALID, ConnectionState.REMOVED),
        (ConnectionState.ACTIVE, NOT_ALLOWED, ConnectionState.CANNOT_REPLY),
        (ConnectionState.CANNOT_REPLY, NOT_ALLOWED, ConnectionState.CANNOT_REPLY),
        (ConnectionState.DISABLED, NOT_ALLOWED, ConnectionState.DISABLED),
        (ConnectionState.REMOVED, NOT_ALLOWED, ConnectionState.REMOVED),
        (ConnectionState.ACTIVE, "Bad Request: chat not found", None),
        (ConnectionState.ACTIVE, "Too Many Requests: retry after 5", None),
    ],
)
def test_what_a_refusal_reveals(
    state: ConnectionState, reason: str, after: ConnectionState | None
) -> None:
    """INVALID means removed; NOT_ALLOWED means no replies, keeping a sharper state; other
    refusals say nothing about the connection."""
    assert business_rules.after_refusal(state, reason) is after


@pytest.mark.parametrize(
    ("body", "can_reply"),
    [
        ({"rights": {"can_reply": True}, "can_reply": True}, True),
        ({"rights": {"can_read_messages": True}, "can_reply": True}, False),
        ({"can_reply": True}, True),
        ({"can_reply": False}, False),
        ({}, False),
    ],
)
def test_the_right_to_reply_from_either_shape(body: dict[str, Any], can_reply: bool) -> None:
    """Bot API 9's `rights` win over the deprecated top-level `can_reply`, read when alone."""
    assert business_rules.can_reply_of(body) is can_reply
