"""What the outbox needs from the domains, given to it at start-up (it imports none of them).

- a token source: the bot's token, read on the send job's read connection;
- recipients: named by a send's `Result`, they hear how it ended (and may be asked first);
- chat-fate hooks: what the domains do when Telegram says a chat moved (a group became a
  supergroup) or is gone for the bot (kicked, blocked, not a member).

Every hook runs on the connection the outbox hands it, inside the send job's transaction
where it writes (DESIGN: anything a job does runs on the job's connection).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.telegram.outbox.outcomes import Outcome, Readiness

TokenSource = Callable[[AsyncConnection, int], Awaitable[str]]
# (conn, reference) → Readiness: read-only, on the job's read connection, before each run.
Ready = Callable[[AsyncConnection, Mapping[str, Any]], Awaitable[Readiness]]
# (conn, reference, outcome): in the transaction that ends the job.
Finished = Callable[[AsyncConnection, Mapping[str, Any], Outcome], Awaitable[None]]
# (conn, bot_id, old_chat_id, new_chat_id)
Migrated = Callable[[AsyncConnection, int, int, int], Awaitable[None]]
# (conn, bot_id, chat_id, reason)
ChatGone = Callable[[AsyncConnection, int, int, str], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Result:
    """Which recipient hears how a send ended, and the domain's own reference to pass it."""

    handler: str  # a name registered with `Outbox.recipient`
    reference: Mapping[str, Any]  # JSON-ready; e.g. {"notification_id": …, "part": 0}


@dataclass(frozen=True, kw_only=True)
class Recipient:
    finished: Finished | None = None
    ready: Ready | None = None


class UnknownRecipient(LookupError):
    """A send names a recipient nobody registered (a domain missing from the wiring)."""


@dataclass
class Outbox:
    """The outbox's wiring: built by tgrelay.wiring, filled by each domain's `install`."""

    token_of: TokenSource
    _recipients: dict[str, Recipient] = field(default_factory=dict)
    _migrated: list[Migrated] = field(default_factory=list)
    _chat_gone: list[ChatGone] = field(default_factory=list)

    def recipient(
        self, name: str, *, finished: Finished | None = None, ready: Ready | None = None
    ) -> None:
        """Register a recipient under `name` (once: two domains must not share a name)."""
        if name in self._recipients:
            raise ValueError(f"recipient {name!r} is registered already")
        self._recipients[name] = Recipient(finished=finished, ready=ready)

    def on_migrated(self, hook: Migrated) -> None:
        self._migrated.append(hook)

    def on_chat_gone(self, hook: ChatGone) -> None:
        self._chat_gone.append(hook)

    def recipient_of(self, result: Result | None) -> Recipient | None:
        if result is None:
            return None
        found = self._recipients.get(result.handler)
        if found is None:
            raise UnknownRecipient(f"no outbox recipient {result.handler!r}")
        return found

    async def migrated(
        self, conn: AsyncConnection, *, bot_id: int, old_chat_id: int, new_chat_id: int
    ) -> None:
        for hook in self._migrated:
            await hook(conn, bot_id, old_chat_id, new_chat_id)

    async def chat_gone(
        self, conn: AsyncConnection, *, bot_id: int, chat_id: int, reason: str
    ) -> None:
        for hook in self._chat_gone:
            await hook(conn, bot_id, chat_id, reason)
