"""How commands print records: a table on a terminal, tab-separated lines in a pipe, or JSON.

In a pipe nothing is wrapped or boxed: one record per line, fields separated by tabs and no
header, as `cut -f` and `awk -F'\\t'` expect (GitHub's `gh` does the same). `--json` prints
every field, typed, for scripts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import typer

# Typer options every listing takes.
JSON_HELP = "print JSON, one object per record, in a list"


def table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, fold: Sequence[str] = ()
) -> None:
    """Print rows under `columns`; `fold` names columns whose whole value must stay visible."""
    if not sys.stdout.isatty():
        for row in rows:
            typer.echo("\t".join(_one_line(cell) for cell in row))
        return
    from rich.console import Console
    from rich.table import Table

    rendered = Table(*columns)
    for name in fold:
        rendered.columns[list(columns).index(name)].overflow = "fold"
    for row in rows:
        rendered.add_row(*row)
    Console().print(rendered)


def json_array(records: Sequence[dict[str, Any]]) -> None:
    """Print records as one JSON array."""
    typer.echo(json.dumps(list(records), indent=2, ensure_ascii=False, default=str))


def _one_line(cell: str) -> str:
    return cell.replace("\t", " ").replace("\n", " ")
