"""Workspace records: workspaces, their API keys, and who acts for them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class Workspace:
    id: str  # "ws_" + 16 random characters
    name: str
    created_at: datetime


class KeyScope(enum.StrEnum):
    ADMIN = "admin"  # reads and changes anything in its workspace, keys included
    READ = "read"  # reads only: every write answers 403


@dataclass(frozen=True, kw_only=True)
class ApiKey:
    """An API key as stored: never its secret, only what identifies and describes it."""

    id: str  # the key's public part, "tgr_" + 12 characters; the key starts with it
    workspace_id: str
    name: str
    scope: KeyScope
    created_at: datetime
    last_used_at: datetime | None  # to the minute: written at most once a minute
    revoked_at: datetime | None

    @property
    def prefix(self) -> str:
        """What the key's holder sees it start with."""
        return f"{self.id}_…"


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who acts for a workspace: an API key holder, or the operator at the command line."""

    workspace_id: str
    actor: str  # for audit rows: "api_key:tgr_…" (the key's public part) or "cli"
    # Only API keys (and the UI sessions signed in with them) can be read-only; the operator
    # at the command line acts with full rights.
    scope: KeyScope = KeyScope.ADMIN
