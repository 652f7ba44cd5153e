"""Statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite


def upsert(dialect_name: str, table: Table) -> sqlite.Insert | postgresql.Insert:
    """An INSERT that accepts `.on_conflict_do_nothing/do_update` on either database."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
