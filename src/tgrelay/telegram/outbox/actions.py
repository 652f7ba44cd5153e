"""What the outbox does about each Telegram error: one table, read top to bottom, first match.

Pure: `decide(error)` looks only at our error (already translated from aiogram's by
`telegram.client.translate`) and names the action; `jobs` carries it out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from tgrelay import errors


class Action(enum.StrEnum):
    SUCCEED = "succeed"  # the edit changed nothing: Telegram already shows what we asked for
    WAIT = "wait"  # 429: come back after retry_after; only this chat is held
    MIGRATE = "migrate"  # the group became a supergroup: the domains follow, the send goes there
    CHAT_GONE = "chat_gone"  # 403: the bot was kicked, blocked, or is not a member
    FAIL = "fail"  # refused for good (other 400s, 401, answers we cannot read): told, not retried
    RETRY = "retry"  # 5xx, network, timeout: the worker's backoff, spending an attempt
    BREAKER = "breaker"  # not sent (the bot's breaker is open): come back, no attempt spent


@dataclass(frozen=True, kw_only=True)
class Rule:
    error: type[errors.TelegramError]
    action: Action
    when: Callable[[errors.TelegramError], bool] | None = None
    says: str = ""  # put before the error's own message in a failure's reason


@dataclass(frozen=True, kw_only=True)
class Decision:
    action: Action
    reason: str  # for the domain's record and the log; never holds a token


def _not_modified(error: errors.TelegramError) -> bool:
    # "Bad Request: message is not modified: specified new message content and reply markup
    # are exactly the same as a current content and reply markup of the message"
    return "message is not modified" in error.message


def _migrated(error: errors.TelegramError) -> bool:
    return isinstance(error, errors.TelegramBadRequest) and error.migrate_to_chat_id is not None


# Order matters: the circuit-open refusal is a kind of TelegramUnavailable, and both special
# 400s are TelegramBadRequests.
TABLE: tuple[Rule, ...] = (
    Rule(error=errors.TelegramCircuitOpen, action=Action.BREAKER),
    Rule(error=errors.TelegramUnavailable, action=Action.RETRY, says="Telegram unreachable"),
    Rule(error=errors.TelegramRetryAfter, action=Action.WAIT),
    Rule(error=errors.TelegramBadRequest, action=Action.MIGRATE, when=_migrated),
    Rule(error=errors.TelegramBadRequest, action=Action.SUCCEED, when=_not_modified),
    Rule(error=errors.TelegramBadRequest, action=Action.FAIL),
    Rule(error=errors.TelegramForbidden, action=Action.CHAT_GONE),
    Rule(error=errors.TelegramUnauthorized, action=Action.FAIL, says="the bot's token was refused"),
    # 409 cannot answer a send; an answer aiogram could not read may have been a success, and
    # sending again could post twice.
    Rule(error=errors.TelegramError, action=Action.FAIL),
)


def decide(error: errors.TelegramError, table: tuple[Rule, ...] = TABLE) -> Decision:
    """The first rule of `table` that fits `error` (the last row fits every Telegram error)."""
    for rule in table:
        if isinstance(error, rule.error) and (rule.when is None or rule.when(error)):
            message = error.message
            return Decision(
                action=rule.action, reason=f"{rule.says}: {message}" if rule.says else message
            )
    raise LookupError(f"no rule for {type(error).__name__}")  # a table without a last row
