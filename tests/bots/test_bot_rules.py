"""The pure bot rules: webhook drift, health verdicts, valid secret generations, rotation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.bots import rules
from tgrelay.bots.models import BotMode, BotStatus, ConflictKind, ConnectedBot

OURS = "https://relay.example/telegram/123"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("registered", "expected", "drift"),
    [
        (OURS, OURS, None),
        ("", OURS, ConflictKind.EMPTY),
        ("https://other.example/hook", OURS, ConflictKind.FOREIGN),
        (OURS + "/", OURS, ConflictKind.FOREIGN),
        ("", None, None),
        (OURS, None, ConflictKind.FOREIGN),
        ("https://other.example/hook", None, ConflictKind.FOREIGN),
    ],
)
def test_webhook_drift(registered: str, expected: str | None, drift: ConflictKind | None) -> None:
    """A webhook is drifted unless it is exactly ours (webhook mode) or absent (polling mode)."""
    assert rules.webhook_drift(registered, expected) is drift


@pytest.mark.parametrize(
    ("token_accepted", "registered", "expected", "status", "kind"),
    [
        (True, OURS, OURS, BotStatus.HEALTHY, None),
        (True, "", OURS, BotStatus.WEBHOOK_CONFLICT, ConflictKind.EMPTY),
        (True, "https://other.example/", OURS, BotStatus.WEBHOOK_CONFLICT, ConflictKind.FOREIGN),
        (True, "", None, BotStatus.HEALTHY, None),
        (True, OURS, None, BotStatus.WEBHOOK_CONFLICT, ConflictKind.FOREIGN),
        (False, "", OURS, BotStatus.TOKEN_REVOKED, None),
        (False, "", None, BotStatus.TOKEN_REVOKED, None),
    ],
)
def test_judge_health(
    token_accepted: bool,
    registered: str,
    expected: str | None,
    status: BotStatus,
    kind: ConflictKind | None,
) -> None:
    """A refused token means revoked; otherwise the webhook drift decides the status."""
    observation = rules.Observation(token_accepted=token_accepted, registered_url=registered)

    verdict = rules.judge_health(observation, expected_url=expected)

    assert (verdict.status, verdict.conflict_kind) == (status, kind)
    assert verdict.reason


def _bot(generation: int, valid_until: datetime | None) -> ConnectedBot:
    return ConnectedBot(
        id=123,
        workspace_id="ws_test",
        username="test_bot",
        first_name="Test",
        token_fingerprint="123:…abcd",
        mode=BotMode.WEBHOOK,
        status=BotStatus.HEALTHY,
        conflict_kind=None,
        secret_generation=generation,
        previous_secret_valid_until=valid_until,
        webhook_url=OURS,
        last_error_message=None,
        last_error_at=None,
        last_checked_at=None,
        connected_since=NOW,
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.parametrize(
    ("generation", "valid_until", "generations"),
    [
        (1, None, [1]),
        (2, None, [2]),
        (2, NOW + timedelta(seconds=1), [2, 1]),
        (2, NOW, [2]),
        (2, NOW - timedelta(seconds=1), [2]),
        (1, NOW + timedelta(seconds=1), [1]),
    ],
)
def test_valid_secret_generations(
    generation: int, valid_until: datetime | None, generations: list[int]
) -> None:
    """The current generation is always valid; the previous one only before its grace ends."""
    assert rules.valid_secret_generations(_bot(generation, valid_until), NOW) == generations


@pytest.mark.parametrize(
    ("mode", "status", "valid_until", "allowed"),
    [
        (BotMode.WEBHOOK, BotStatus.HEALTHY, None, True),
        (BotMode.WEBHOOK, BotStatus.WEBHOOK_CONFLICT, None, True),
        (BotMode.WEBHOOK, BotStatus.HEALTHY, NOW, True),
        (BotMode.WEBHOOK, BotStatus.HEALTHY, NOW - timedelta(seconds=1), True),
        (BotMode.WEBHOOK, BotStatus.HEALTHY, NOW + timedelta(seconds=1), False),
        (BotMode.WEBHOOK, BotStatus.DISCONNECTED, None, False),
        (BotMode.POLLING, BotStatus.HEALTHY, None, False),
    ],
)
def test_may_rotate_secret(
    mode: BotMode, status: BotStatus, valid_until: datetime | None, allowed: bool
) -> None:
    """The breaker rotates only a connected webhook bot, and not while an earlier rotation's grace lasts."""
    bot = replace(_bot(3, valid_until), mode=mode, status=status)
    assert rules.may_rotate_secret(bot, NOW) is allowed


@pytest.mark.parametrize(
    ("mode", "status", "kind", "holds"),
    [
        (BotMode.WEBHOOK, BotStatus.HEALTHY, None, True),
        (BotMode.WEBHOOK, BotStatus.TOKEN_REVOKED, None, True),
        (BotMode.WEBHOOK, BotStatus.WEBHOOK_CONFLICT, ConflictKind.EMPTY, True),
        (BotMode.WEBHOOK, BotStatus.WEBHOOK_CONFLICT, ConflictKind.FOREIGN, False),
        (BotMode.WEBHOOK, BotStatus.DISCONNECTED, None, False),
        (BotMode.POLLING, BotStatus.HEALTHY, None, False),
    ],
)
def test_holds_webhook(
    mode: BotMode, status: BotStatus, kind: ConflictKind | None, holds: bool
) -> None:
    """Key rotation registers our webhook again only where it belongs: a connected webhook
    bot, never over another service's webhook."""
    bot = replace(_bot(3, None), mode=mode, status=status, conflict_kind=kind)
    assert rules.holds_webhook(bot) is holds


@pytest.mark.parametrize(
    ("status", "kind", "advice"),
    [
        (BotStatus.HEALTHY, None, None),
        (
            BotStatus.TOKEN_REVOKED,
            None,
            (
                rules.Remedy.ROTATE_TOKEN,
                "Rotate the token: send /token to @BotFather and paste the new one here.",
            ),
        ),
        (
            BotStatus.WEBHOOK_CONFLICT,
            ConflictKind.FOREIGN,
            (
                rules.Remedy.RECONNECT,
                "Reconnect: another service took the bot over; reconnecting takes it back.",
            ),
        ),
        (
            BotStatus.WEBHOOK_CONFLICT,
            ConflictKind.EMPTY,
            (
                rules.Remedy.RECONNECT,
                "Reconnect: our webhook was deleted; reconnecting registers it again.",
            ),
        ),
        (
            BotStatus.DISCONNECTED,
            None,
            (rules.Remedy.RECONNECT, "Reconnect to receive its updates again."),
        ),
    ],
)
def test_advise(
    status: BotStatus, kind: ConflictKind | None, advice: tuple[rules.Remedy, str] | None
) -> None:
    """A revoked token calls for a rotation, a foreign or missing webhook and a disconnected bot for a reconnect, a healthy bot for nothing."""
    bot = replace(_bot(1, None), status=status, conflict_kind=kind)

    found = rules.advise(bot)

    assert (None if found is None else (found.remedy, found.text)) == advice
