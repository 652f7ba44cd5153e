"""What a send job tells the domain that asked for it, and what the domain tells it first.

Before a send (on a read connection) a domain's `ready` may say where the send goes now, that
it is no longer wanted, or why it must not go; after it, `finished` gets the outcome in the
transaction that ends the job (see `registry.Recipient`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tgrelay.telegram.outbox.actions import Action
from tgrelay.telegram.outbox.messages import Destination, Request


@dataclass(frozen=True, kw_only=True)
class Sent:
    """Telegram accepted the request."""

    method: str
    # The message sent, copied or edited; None for topic management and callback answers.
    message_id: int | None = None
    message_thread_id: int | None = None  # the topic createForumTopic made


@dataclass(frozen=True, kw_only=True)
class Failed:
    """The request will not be sent (again): Telegram refused it, retries ran out, or the
    domain's `ready` refused it (`action` FAIL)."""

    method: str
    action: Action
    reason: str


Outcome = Sent | Failed


@dataclass(frozen=True, kw_only=True)
class Go:
    """Send now; to `destination` when given (the chat and topic as the domain knows them
    today), else where the request says. `request`, when given, replaces the queued request
    for this run: ids known only at send time (a topic made, a copy to reply to or edit)
    are derived from the domain's rows then; `destination` still applies to it."""

    destination: Destination | None = None
    request: Request | None = None


@dataclass(frozen=True, kw_only=True)
class Drop:
    """Nothing to send any more (e.g. an earlier part of the same alert failed): the job ends
    without a request and without an outcome."""


@dataclass(frozen=True, kw_only=True)
class Refuse:
    """Must not be sent (e.g. the connection was deleted): ends as Failed with this reason."""

    reason: str


Readiness = Go | Drop | Refuse
