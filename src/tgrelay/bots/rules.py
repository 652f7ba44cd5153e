"""Pure decisions about bots: webhook drift, health verdicts, which secrets are still valid,
and what an operator should do about a bot that is not healthy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tgrelay.bots.models import BotMode, BotStatus, ConflictKind, ConnectedBot


@dataclass(frozen=True, kw_only=True)
class Observation:
    """What one health check saw at Telegram."""

    token_accepted: bool  # False when getMe answered 401
    registered_url: str  # getWebhookInfo's url, "" when none is set or it was not asked


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The status a bot should have after an observation, and why (for the audit row)."""

    status: BotStatus
    conflict_kind: ConflictKind | None
    reason: str


def webhook_drift(registered_url: str, expected_url: str | None) -> ConflictKind | None:
    """How the registered webhook differs from ours; None when it is as expected.

    `expected_url` None means polling mode, where any webhook is foreign: Telegram refuses
    getUpdates while one is set.
    """
    if registered_url == (expected_url or ""):
        return None
    if not registered_url:
        return ConflictKind.EMPTY
    return ConflictKind.FOREIGN


def judge_health(observation: Observation, *, expected_url: str | None) -> Verdict:
    """The status that follows from an observation; a refused token outweighs the webhook."""
    if not observation.token_accepted:
        return Verdict(
            status=BotStatus.TOKEN_REVOKED,
            conflict_kind=None,
            reason="Telegram refused the token (401): it was revoked or replaced",
        )
    drift = webhook_drift(observation.registered_url, expected_url)
    if drift is ConflictKind.EMPTY:
        return Verdict(
            status=BotStatus.WEBHOOK_CONFLICT,
            conflict_kind=drift,
            reason="no webhook is registered, so Telegram delivers nothing to us",
        )
    if drift is ConflictKind.FOREIGN:
        reason = (
            "another service's webhook is registered instead of ours"
            if expected_url is not None
            else "a webhook is registered, so Telegram refuses getUpdates"
        )
        return Verdict(status=BotStatus.WEBHOOK_CONFLICT, conflict_kind=drift, reason=reason)
    return Verdict(
        status=BotStatus.HEALTHY,
        conflict_kind=None,
        reason="the token works and updates reach us",
    )


def valid_secret_generations(bot: ConnectedBot, now: datetime) -> list[int]:
    """Generations whose webhook secrets are accepted: the current one, and the previous one
    while its grace period after a rotation lasts (so the switch loses no update)."""
    generations = [bot.secret_generation]
    grace_end = bot.previous_secret_valid_until
    if bot.secret_generation > 1 and grace_end is not None and grace_end > now:
        generations.append(bot.secret_generation - 1)
    return generations


def holds_webhook(bot: ConnectedBot) -> bool:
    """Whether our webhook should be registered at Telegram for this bot: webhook mode and
    connected, with no foreign webhook in its place (which we must not overwrite)."""
    return (
        bot.mode is BotMode.WEBHOOK
        and bot.status is not BotStatus.DISCONNECTED
        and bot.conflict_kind is not ConflictKind.FOREIGN
    )


def may_rotate_secret(bot: ConnectedBot, now: datetime) -> bool:
    """Whether the forged-request breaker may move a bot to its next secret generation.

    Only a connected webhook-mode bot has a secret to rotate. Not while an earlier
    rotation's grace lasts: only one previous generation is accepted, so rotating again
    would drop a secret whose pushes may still be in flight at Telegram.
    """
    if bot.mode is not BotMode.WEBHOOK or bot.status is BotStatus.DISCONNECTED:
        return False
    grace_end = bot.previous_secret_valid_until
    return grace_end is None or grace_end <= now


class Remedy(StrEnum):
    # A new token from BotFather replaces the refused one.
    ROTATE_TOKEN = "rotate_token"  # noqa: S105 (a remedy name, not a password)
    RECONNECT = "reconnect"  # connecting again with the stored token registers our webhook


@dataclass(frozen=True, kw_only=True)
class Advice:
    """What the operator should do about a bot, in the words the pages and the CLI show."""

    remedy: Remedy
    text: str


def advise(bot: ConnectedBot) -> Advice | None:
    """The way back to healthy for a bot's status; None when there is nothing to do."""
    match bot.status, bot.conflict_kind:
        case BotStatus.TOKEN_REVOKED, _:
            return Advice(
                remedy=Remedy.ROTATE_TOKEN,
                text="Rotate the token: send /token to @BotFather and paste the new one here.",
            )
        case BotStatus.WEBHOOK_CONFLICT, ConflictKind.FOREIGN:
            return Advice(
                remedy=Remedy.RECONNECT,
                text="Reconnect: another service took the bot over; reconnecting takes it back.",
            )
        case BotStatus.WEBHOOK_CONFLICT, _:
            return Advice(
                remedy=Remedy.RECONNECT,
                text="Reconnect: our webhook was deleted; reconnecting registers it again.",
            )
        case BotStatus.DISCONNECTED, _:
            return Advice(
                remedy=Remedy.RECONNECT,
                text="Reconnect to receive its updates again.",
            )
    return None
