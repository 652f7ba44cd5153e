"""The groups domain's pure rules: /start parsing, expiry, phase 2's verdict, text splitting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.groups import rules
from tgrelay.groups.models import SessionState

T0 = datetime(2026, 11, 21, 12, 0, 0, 500_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/start abc_DEF-123", rules.StartCommand(bot=None, payload="abc_DEF-123")),
        ("/start@alerts_bot tok", rules.StartCommand(bot="alerts_bot", payload="tok")),
        ("/start", rules.StartCommand(bot=None, payload=None)),
        ("  /start tok  ", rules.StartCommand(bot=None, payload="tok")),
        ("/starting tok", None),
        ("hello /start tok", None),
        ("/start two words", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_start(text: str | None, expected: rules.StartCommand | None) -> None:
    """Only a whole-message /start (optionally addressed to a bot) with at most one payload counts."""
    assert rules.parse_start(text) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("a" * 32, True),
        ("tok-_9" + "x" * 26, True),
        ("a" * 31, False),
        ("a" * 33, False),
        ("referral-campaign-7", False),  # the team's own deep links are not ours
        ("!" * 32, False),
        ("", False),
        (None, False),
    ],
)
def test_is_token(payload: str | None, expected: bool) -> None:
    """Connect tokens are exactly 32 characters of A-Za-z0-9_-, Telegram's payload alphabet."""
    assert rules.is_token(payload) is expected


@pytest.mark.parametrize(
    ("state", "now", "expected"),
    [
        (SessionState.WAITING_PRIVATE, T0 - timedelta(seconds=1), SessionState.WAITING_PRIVATE),
        (SessionState.WAITING_PRIVATE, T0, SessionState.EXPIRED),
        (SessionState.WAITING_GROUP, T0 + timedelta(hours=1), SessionState.EXPIRED),
        (SessionState.CONNECTED, T0 + timedelta(hours=1), SessionState.CONNECTED),
        (SessionState.CANCELLED, T0 + timedelta(hours=1), SessionState.CANCELLED),
    ],
)
def test_effective_state(state: SessionState, now: datetime, expected: SessionState) -> None:
    """Open sessions expire at expires_at; finished ones keep their state."""
    assert rules.effective_state(state, T0, now) is expected


@pytest.mark.parametrize(
    ("old", "new", "is_member", "joined", "left"),
    [
        ("left", "member", None, True, False),
        ("kicked", "administrator", None, True, False),
        ("left", "restricted", True, True, False),
        ("left", "restricted", False, False, False),
        ("member", "administrator", None, False, False),
        ("member", "left", None, False, True),
        ("administrator", "kicked", None, False, True),
        ("member", "restricted", False, False, True),
    ],
)
def test_membership_changes(
    old: str, new: str, is_member: bool | None, joined: bool, left: bool
) -> None:
    """A bot joins when it moves from outside to inside the chat, and leaves the other way."""
    assert rules.bot_joined(old, new, new_is_member=is_member) is joined
    assert rules.bot_left(old, new, new_is_member=is_member) is left


@pytest.mark.parametrize(
    ("actor", "added_at", "expected"),
    [
        (1, T0, rules.Addition.CONNECT),
        (1, T0.replace(microsecond=0), rules.Addition.CONNECT),  # Telegram's whole seconds
        (1, T0 - timedelta(seconds=1), rules.Addition.STALE),
        (2, T0 + timedelta(seconds=5), rules.Addition.OTHER_USER),
    ],
)
def test_judge_addition(actor: int, added_at: datetime, expected: rules.Addition) -> None:
    """Only the verified user's addition at or after phase 2's start connects."""
    verdict = rules.judge_addition(
        verified_user_id=1, group_started_at=T0, actor_id=actor, added_at=added_at
    )
    assert verdict is expected


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, ["short"]),
        ("aaaa\nbbbb\ncccc", 10, ["aaaa\nbbbb", "cccc"]),
        ("aaaaaaaaaaaaaaa", 10, ["aaaaaaaaaa", "aaaaa"]),
        ("ab\n" + "c" * 12 + "\nde", 10, ["ab", "cccccccccc", "cc\nde"]),
    ],
)
def test_split_text(text: str, limit: int, expected: list[str]) -> None:
    """Texts split on line boundaries; a line longer than the limit is cut at it."""
    parts = rules.split_text(text, limit)
    assert parts == expected
    assert all(len(part) <= limit for part in parts)


@pytest.mark.parametrize(
    ("message", "concerns"),
    [
        ({"text": "order #5 is ready"}, False),  # most messages: no typed parse
        ({"photo": [], "caption": "/start abc"}, False),  # a command only counts as text
        ({"text": "/start"}, True),
        ({"text": "/start@alerts_bot AbC123"}, True),
        ({"new_chat_members": []}, True),
        ({"new_chat_member": {}}, True),
        ({"new_chat_participant": {}}, True),
        ({"left_chat_member": {}}, True),
        ({"migrate_to_chat_id": -100}, True),
        ({"migrate_from_chat_id": -1}, True),
    ],
)
def test_only_service_messages_and_start_commands_concern_groups(
    message: dict[str, object], concerns: bool
) -> None:
    assert rules.concerns_groups(message) is concerns
