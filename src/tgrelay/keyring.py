"""Stored secrets under the configured keys: which key each one needs, and moving them all
to the primary key (`tgrelay keys check`, `tgrelay keys rotate`).

Every Fernet ciphertext tgrelay stores is listed in STORED. Bots go one at a time through
`bots.service.rekey`, which moves a bot's webhook secret with its token; endpoints' secrets
move in batches, each written in one short transaction whose UPDATEs compare-and-set on the
values read, so a secret rotated meanwhile by a running `serve` is never put back.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Table, bindparam, func, select, update

from tgrelay import errors
from tgrelay.bots import service as bots
from tgrelay.crypto import TokenCipher
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.runtime import Runtime

# Rows per read and per write transaction: 500 endpoints (three secrets each) hold SQLite's
# write lock for ~5 ms, 8 ms at most; their re-encryption (~45 ms) happens before the
# transaction (bench/keys.py, on the project's 2-core machine with tests running beside).
BATCH_SIZE = 500


@dataclass(frozen=True, kw_only=True)
class SecretColumns:
    """Where one table keeps ciphertexts."""

    table: Table
    plain: tuple[str, ...]  # columns holding one ciphertext (or null)
    # Columns holding JSON [[ciphertext, anything], …] (endpoints.earlier_secrets).
    json_pairs: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.plain, *self.json_pairs)


BOTS = SecretColumns(table=tables.bots, plain=("token_ciphertext",))
ENDPOINTS = SecretColumns(
    table=tables.endpoints,
    plain=("secret_ciphertext", "previous_secret_ciphertext"),
    json_pairs=("earlier_secrets",),
)
STORED = (BOTS, ENDPOINTS)


# --- pure: one row ------------------------------------------------------------------------


def ciphertexts(spec: SecretColumns, row: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(column, ciphertext) of every secret a row holds."""
    found = [(column, str(row[column])) for column in spec.plain if row[column] is not None]
    for column in spec.json_pairs:
        if row[column] is not None:
            found += [(column, str(pair[0])) for pair in orjson.loads(row[column])]
    return found


def reencrypted(
    cipher: TokenCipher, spec: SecretColumns, row: Mapping[str, Any]
) -> dict[str, str] | None:
    """The row's secret columns re-encrypted under the primary key; None when every one is
    there already. UndecryptableSecret names the first that no key opens."""
    positions = [(column, cipher.key_position(c)) for column, c in ciphertexts(spec, row)]
    for column, position in positions:
        if position is None:
            raise errors.UndecryptableSecret(
                table=spec.table.name, row_id=str(row["id"]), column=column
            )
    if all(position == 0 for _, position in positions):
        return None
    values = {c: cipher.reencrypt(row[c]) for c in spec.plain if row[c] is not None}
    for column in spec.json_pairs:
        if row[column] is not None:
            pairs = orjson.loads(row[column])
            moved = [[cipher.reencrypt(pair[0]), *pair[1:]] for pair in pairs]
            values[column] = orjson.dumps(moved).decode()
    return values


def undecryptable_in(path: Path, cipher: TokenCipher | None) -> int:
    """How many secrets a SQLite database file holds that no configured key opens (what
    `tgrelay restore` warns about), every one without keys; a column its migration lacks
    holds none."""
    found = 0
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        for spec in STORED:
            for row in conn.execute(f"SELECT * FROM {spec.table.name}"):  # noqa: S608 (ours)
                present = row.keys()
                values = {c: row[c] if c in present else None for c in ("id", *spec.columns)}
                found += sum(
                    cipher is None or cipher.key_position(c) is None
                    for _, c in ciphertexts(spec, values)
                )
    return found


# --- keys check ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Usage:
    """What each configured key still decrypts; positions as in TGRELAY_SECRET_KEYS."""

    fingerprints: tuple[str, ...]
    # {(table.column, key position or None for undecryptable): count}
    values: Mapping[tuple[str, int | None], int]
    # Webhook-mode bots whose registered webhook secret derives from the key at a position.
    webhooks: Mapping[int | None, int]
    # The latest end of a webhook secret's grace: until then a rotated-out secret, maybe
    # derived from an old key, is still accepted and may be in flight at Telegram.
    grace_until: datetime | None

    def count(self, position: int | None) -> int:
        return sum(n for (_, at), n in self.values.items() if at == position)

    @property
    def removable(self) -> tuple[int, ...]:
        """Positions of old keys nothing needs any more (the primary is never removable)."""
        return tuple(
            position
            for position in range(1, len(self.fingerprints))
            if self.count(position) == 0 and self.webhooks.get(position, 0) == 0
        )


async def usage(rt: Runtime) -> Usage:
    """Count, for every stored ciphertext, the key that opens it (reads only)."""
    cipher = rt.cipher
    values: Counter[tuple[str, int | None]] = Counter()
    for spec in STORED:
        after = None
        while rows := await read_batch(rt.db, spec, after=after, limit=BATCH_SIZE):
            for row in rows:
                for column, ciphertext in ciphertexts(spec, row):
                    values[(f"{spec.table.name}.{column}", cipher.key_position(ciphertext))] += 1
            after = rows[-1]["id"]
    now = rt.clock()
    holders = await bots.webhook_holders(rt)
    graces = [
        h.previous_secret_valid_until
        for h in holders
        if h.previous_secret_valid_until is not None and h.previous_secret_valid_until > now
    ]
    return Usage(
        fingerprints=tuple(cipher.key_fingerprints()),
        values=dict(values),
        webhooks=dict(Counter(cipher.key_position(h.token_ciphertext) for h in holders)),
        grace_until=max(graces, default=None),
    )


# --- keys rotate --------------------------------------------------------------------------


@dataclass(kw_only=True)
class Rotation:
    """What `rotate` did, row by row, as it went."""

    # {table: {outcome: rows}}: done, already, changed (read again), in_grace, unreachable, gone
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)

    def note(self, table: str, outcome: str, rows: int = 1) -> None:
        self.outcomes.setdefault(table, Counter())[outcome] += rows

    @property
    def left(self) -> dict[str, int]:
        """Rows still under an old key, by why: a later run picks them up."""
        left: Counter[str] = Counter()
        for counts in self.outcomes.values():
            for outcome in (bots.Rekeyed.CHANGED, bots.Rekeyed.IN_GRACE, bots.Rekeyed.UNREACHABLE):
                left[outcome] += counts[outcome]
        return {reason: n for reason, n in left.items() if n}


Progress = Callable[[int], None]  # told how many more rows were looked at


async def count_rows(db: Database) -> int:
    """How many rows rotate will look at (for a progress bar's total)."""
    async with db.engine.connect() as conn:
        total = 0
        for spec in STORED:
            total += int(await conn.scalar(select(func.count()).select_from(spec.table)) or 0)
    return total


async def rotate(
    rt: Runtime, *, progress: Progress = lambda rows: None, batch_size: int = BATCH_SIZE
) -> Rotation:
    """Re-encrypt every stored secret under the primary key; rows there already are skipped,
    so an interrupted run just runs again. Rows changed meanwhile are read again."""
    done = Rotation()
    await _rotate_bots(rt, done, progress, batch_size)
    await _rotate_endpoints(rt, done, progress, batch_size)
    return done


# A row that keeps changing under us is left after this many readings (a later run has it).
MAX_READINGS = 5


async def _rotate_bots(rt: Runtime, done: Rotation, progress: Progress, batch_size: int) -> None:
    after: int | None = None
    while True:
        ids = await _ids_after(rt.db, tables.bots, after, batch_size)
        if not ids:
            return
        for bot_id in ids:
            outcome = bots.Rekeyed.CHANGED
            for _ in range(MAX_READINGS):
                outcome = await bots.rekey(rt, int(bot_id))
                if outcome is not bots.Rekeyed.CHANGED:
                    break
            done.note("bots", outcome)
            progress(1)
        after = ids[-1]


async def _rotate_endpoints(
    rt: Runtime, done: Rotation, progress: Progress, batch_size: int
) -> None:
    after: str | None = None
    while True:
        rows = await read_batch(rt.db, ENDPOINTS, after=after, limit=batch_size)
        if not rows:
            return
        pending = rows
        for _ in range(MAX_READINGS):
            pending = await write_batch(rt, ENDPOINTS, pending, done)
            if not pending:
                break
            pending = await read_batch(rt.db, ENDPOINTS, ids=[r["id"] for r in pending])
        done.note(ENDPOINTS.table.name, bots.Rekeyed.CHANGED, len(pending))
        progress(len(rows))
        after = rows[-1]["id"]


async def read_batch(
    db: Database,
    spec: SecretColumns,
    *,
    after: Any = None,
    limit: int | None = None,
    ids: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Rows' ids and secret columns by id: the next `limit` after `after`, or these `ids`."""
    table = spec.table
    query = select(table.c.id, *(table.c[c] for c in spec.columns)).order_by(table.c.id)
    if after is not None:
        query = query.where(table.c.id > after)
    if ids is not None:
        query = query.where(table.c.id.in_(ids))
    if limit is not None:
        query = query.limit(limit)
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def write_batch(
    rt: Runtime, spec: SecretColumns, rows: Sequence[dict[str, Any]], done: Rotation
) -> list[dict[str, Any]]:
    """Write rows re-encrypted, as read by `read_batch`, in one transaction; each row only
    while it still holds what was read. Returns the rows that changed since."""
    table = spec.table
    planned = [(row, reencrypted(rt.cipher, spec, row)) for row in rows]
    writes = [(row, values) for row, values in planned if values is not None]
    done.note(table.name, bots.Rekeyed.ALREADY, len(planned) - len(writes))
    if not writes:
        return []
    # One executemany: a statement per row cost a thread hop each on SQLite (aiosqlite), and
    # held the write lock about four times as long for 500 rows.
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("old_id"),
            *(table.c[c].is_not_distinct_from(bindparam(f"old_{c}")) for c in spec.columns),
        )
        .values({c: bindparam(f"new_{c}") for c in spec.columns})
    )
    parameters = [
        {
            "old_id": row["id"],
            **{f"old_{c}": row[c] for c in spec.columns},
            # A null column stays null: the comparison above holds it to what was read.
            **{f"new_{c}": values.get(c) for c in spec.columns},
        }
        for row, values in writes
    ]
    async with rt.db.transaction() as conn:
        await conn.execute(statement, parameters)
        # Which rows took the new values: a fresh ciphertext (random IV) is found nowhere else;
        # executemany's rowcount is a total at best, and asyncpg gives none.
        first = spec.plain[0]
        query = select(table.c.id, table.c[first]).where(
            table.c.id.in_([row["id"] for row, _ in writes])
        )
        stored = {found[0]: found[1] for found in await conn.execute(query)}
    changed = [row for row, values in writes if stored.get(row["id"]) != values[first]]
    done.note(table.name, bots.Rekeyed.DONE, len(writes) - len(changed))
    return changed


async def _ids_after(db: Database, table: Table, after: Any, limit: int) -> list[Any]:
    async with db.engine.connect() as conn:
        query = select(table.c.id).order_by(table.c.id).limit(limit)
        if after is not None:
            query = query.where(table.c.id > after)
        return list((await conn.scalars(query)).all())
