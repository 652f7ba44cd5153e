"""`tgrelay webhooks verify`: check a received webhook's signature, as a receiver would."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from tgrelay import errors
from tgrelay.cli import invocation
from tgrelay.http import signing

app = invocation.group("Outgoing event webhooks: verify what a receiver got.")


def _value_or_file(value: str) -> bytes:
    """`@path` is the file's bytes exactly as stored; any other value is itself."""
    if not value.startswith("@"):
        return value.encode()
    try:
        return Path(value[1:]).read_bytes()
    except OSError as exc:
        raise errors.InvalidInput(f"cannot read {value[1:]}: {exc.strerror}") from None


@app.command("verify")
def verify(
    secret: Annotated[
        str,
        typer.Option(envvar="TGRELAY_WEBHOOK_SECRET", help="the endpoint's secret (whsec_…)"),
    ],
    headers: Annotated[
        str,
        typer.Option(
            help="received headers: a JSON object, or @file of JSON or 'Name: value' lines"
        ),
    ],
    body: Annotated[str, typer.Option(help="received body, or @file (read byte for byte)")],
    tolerance: Annotated[
        int, typer.Option(min=0, help="seconds the timestamp may be away from now")
    ] = int(signing.TOLERANCE.total_seconds()),
) -> None:
    """Check that a webhook was signed with this secret, as a receiver would."""
    with invocation.errors_as_exit():
        received = signing.parse_headers(_value_or_file(headers).decode(errors="replace"))
        signing.verify(
            secret,
            headers=received,
            body=_value_or_file(body),
            tolerance=timedelta(seconds=tolerance),
        )
    typer.echo(
        f"verified: webhook-id={received[signing.ID_HEADER]} "
        f"timestamp={received[signing.TIMESTAMP_HEADER]}"
    )
