"""`tgrelay keys check` and `tgrelay keys rotate`: the secret keys and what still needs them.

Keys are shown by position in TGRELAY_SECRET_KEYS (#1 is the primary) and an 8-digit
fingerprint, never themselves. The work is tgrelay.keyring's; this prints it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from tgrelay.cli import invocation

if TYPE_CHECKING:
    from tgrelay.keyring import Rotation, Usage
    from tgrelay.runtime import Runtime

app = invocation.group(
    "The secret keys (TGRELAY_SECRET_KEYS) that encrypt stored bot tokens and endpoint secrets."
)


def _name(position: int, fingerprints: tuple[str, ...] | list[str]) -> str:
    role = " (primary)" if position == 0 else ""
    return f"key #{position + 1} {fingerprints[position]}{role}"


@app.command("check")
def check(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Say what each key still decrypts, and whether the old ones can be removed.

    Exits with status 1 when a stored secret opens with no configured key.
    """

    async def use(rt: Runtime) -> Usage:
        from tgrelay import keyring

        return await keyring.usage(rt)

    found = invocation.with_runtime(use)
    if as_json:
        typer.echo(json.dumps(_usage_record(found), indent=2))
    else:
        for line in verdict_lines(found):
            typer.echo(line)
    if found.count(None):
        raise typer.Exit(1)


def _usage_record(found: Usage) -> dict[str, object]:
    return {
        "keys": [
            {
                "position": position + 1,
                "fingerprint": fingerprint,
                "primary": position == 0,
                "values": dict(_columns(found, position)),
                "webhooks": found.webhooks.get(position, 0),
                "removable": position in found.removable and found.grace_until is None,
            }
            for position, fingerprint in enumerate(found.fingerprints)
        ],
        "undecryptable": found.count(None),
        "grace_until": found.grace_until.isoformat() if found.grace_until else None,
    }


def _columns(found: Usage, position: int | None) -> list[tuple[str, int]]:
    """(table.column, values) the key at `position` opens, by column."""
    return sorted((column, n) for (column, at), n in found.values.items() if at == position)


def verdict_lines(found: Usage) -> list[str]:
    """What `keys check` prints: one line per key, then what to do."""
    lines = []
    for position in range(len(found.fingerprints)):
        columns = ", ".join(f"{column} {n}" for column, n in _columns(found, position))
        lines.append(
            f"{_name(position, found.fingerprints)}: {found.count(position)} stored secrets"
            + (f" ({columns})" if columns else "")
            + f", {found.webhooks.get(position, 0)} bots' webhooks"
        )
    missing = found.count(None)
    if missing:
        lines.append(
            f"{missing} stored secrets open with no configured key "
            f"({found.webhooks.get(None, 0)} of them bots' webhooks): a key they need is missing"
        )
    old = range(1, len(found.fingerprints))
    needed = [p for p in old if p not in found.removable]
    if needed:
        lines.append(
            "still needed: "
            + ", ".join(f"key #{p + 1}" for p in needed)
            + "; run `tgrelay keys rotate` to move everything to the primary key"
        )
    if found.removable and found.grace_until is not None:
        lines.append(
            f"wait until {found.grace_until.isoformat()} before removing an old key: a webhook "
            "secret rotated out before then may derive from it and is still accepted"
        )
    elif found.removable:
        lines.append(
            "can be removed from TGRELAY_SECRET_KEYS: "
            + ", ".join(_name(p, found.fingerprints) for p in found.removable)
        )
    elif not needed:
        lines.append("only the primary key is configured: nothing to remove")
    return lines


@app.command("rotate")
def rotate(
    batch_size: Annotated[
        int, typer.Option(min=1, help="rows per transaction (endpoints) and per read")
    ] = 500,  # keyring.BATCH_SIZE, not imported here: keyring loads SQLAlchemy
) -> None:
    """Re-encrypt every stored token and secret under the primary key (the first in
    TGRELAY_SECRET_KEYS); bots' webhooks are registered again under its secret.

    Safe while serve runs, once every process has the new key list; resumable: rows already
    under the primary key are skipped. Exits with status 1 when rows were left for later.
    """

    async def use(rt: Runtime) -> Rotation:
        from rich.console import Console
        from rich.progress import Progress

        from tgrelay import errors, keyring

        typer.echo(f"re-encrypting under {_name(0, rt.cipher.key_fingerprints())}", err=True)
        total = await keyring.count_rows(rt.db)
        looked_at = 0
        with Progress(console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task("stored secrets", total=total)

            def advance(rows: int) -> None:
                nonlocal looked_at
                looked_at += rows
                bar.advance(task, rows)

            try:
                return await keyring.rotate(rt, progress=advance, batch_size=batch_size)
            except errors.UndecryptableSecret as exc:
                raise errors.ConfigurationError(
                    f"{exc.message}. The {looked_at} rows looked at before it stay done; "
                    "put its key back in TGRELAY_SECRET_KEYS (any position) and run again"
                ) from exc

    done = invocation.with_runtime(use)
    for line in summary_lines(done):
        typer.echo(line)
    if done.left:
        raise typer.Exit(1)


def summary_lines(done: Rotation) -> list[str]:
    """What `keys rotate` prints once it is through."""
    from tgrelay.bots.service import Rekeyed

    words = {
        Rekeyed.DONE: "re-encrypted",
        Rekeyed.ALREADY: "already under the primary key",
        Rekeyed.GONE: "deleted meanwhile",
        Rekeyed.CHANGED: "changing too often meanwhile (left for a later run)",
        Rekeyed.IN_GRACE: "in a webhook secret's grace period (left for a later run)",
        Rekeyed.UNREACHABLE: "not re-registered: Telegram unreachable (left for a later run)",
    }
    lines = []
    for table, counts in done.outcomes.items():
        parts = [f"{n} {words[Rekeyed(outcome)]}" for outcome, n in counts.items() if n]
        lines.append(f"{table}: " + ("; ".join(parts) if parts else "none"))
    if done.left:
        lines.append("some rows are still under an old key: run `tgrelay keys rotate` again")
    else:
        lines.append("done: `tgrelay keys check` says which old keys can now be removed")
    return lines
