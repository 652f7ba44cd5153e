"""Workspace records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class Workspace:
    id: str  # "ws_" + 16 random characters
    name: str
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who acts for a workspace: an API key holder, or the operator at the command line."""

    workspace_id: str
    actor: str  # for audit rows: "api_key:tgr_…" (the key's public part) or "cli"
