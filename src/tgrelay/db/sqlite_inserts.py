"""INSERTs compiled once by SQLAlchemy for sqlite3's qmark style, for writers that bind rows
themselves (the intake's SQLite writer process), so the schema stays declared in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite

from tgrelay.db.types import Timestamp, sqlite_timestamp_text

_DIALECT = sqlite.dialect()


@dataclass(frozen=True)
class PreparedInsert:
    """An INSERT split around its one VALUES group, with each column's bind processing."""

    head: str  # "INSERT INTO t (a, b) VALUES "
    group: str  # "(?, ?)"
    tail: str  # "" or " ON CONFLICT (…) DO NOTHING"
    columns: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    # A row's values in column order, picked in C: the intake calls it for every update.
    _pick: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        columns = self.columns
        pick = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
        object.__setattr__(self, "_pick", pick)

    def params(self, rows: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
        """Each row's values in column order, as SQLite stores them (datetimes as text).

        A value repeated across rows (a batch's `now`) is converted once: on the intake's hot
        path the conversions cost more than everything else here.
        """
        processed = [(i, p) for i, p in enumerate(self.processors) if p is not None]
        converted: dict[tuple[int, Any], Any] = {}
        result = []
        pick = self._pick
        for row in rows:
            values = list(pick(row))
            for i, process in processed:
                value = values[i]
                if value is None:
                    continue
                try:
                    values[i] = converted[(i, value)]
                except KeyError:
                    values[i] = converted[(i, value)] = process(value)
                except TypeError:  # unhashable (a JSON column's dict): convert every time
                    values[i] = process(value)
            result.append(values)
        return result


def prepare_insert(
    table: Table,
    columns: Sequence[str],
    *,
    ignore_conflicts_on: Sequence[str] = (),
    replace_conflicts_on: Sequence[str] = (),
    add_on_conflict: tuple[str, str] | None = None,
) -> PreparedInsert:
    """`ignore_conflicts_on` keeps a row already there; `replace_conflicts_on` overwrites its
    other columns with the new row's; `add_on_conflict` (unique column, counter column) adds
    the new row's counter to the existing row's."""
    statement = sqlite.insert(table)
    if ignore_conflicts_on:
        statement = statement.on_conflict_do_nothing(index_elements=list(ignore_conflicts_on))
    elif replace_conflicts_on:
        replaced = [name for name in columns if name not in replace_conflicts_on]
        statement = statement.on_conflict_do_update(
            index_elements=list(replace_conflicts_on),
            set_={name: statement.excluded[name] for name in replaced},
        )
    elif add_on_conflict is not None:
        unique, counter = add_on_conflict
        statement = statement.on_conflict_do_update(
            index_elements=[unique],
            set_={counter: table.c[counter] + statement.excluded[counter]},
        )
    compiled = statement.compile(dialect=_DIALECT, column_keys=list(columns))
    order = tuple(compiled.positiontup or ())
    processors = tuple(_bind_processor(table, name) for name in order)
    sql = str(compiled)
    group = "(" + ", ".join("?" * len(order)) + ")"
    head, found, tail = sql.partition(" VALUES " + group)
    if not found or group in tail:
        raise ValueError(f"cannot find the one VALUES group of {sql!r}")
    return PreparedInsert(
        head=head + " VALUES ", group=group, tail=tail, columns=order, processors=processors
    )


def _bind_processor(table: Table, column: str) -> Callable[[Any], Any] | None:
    column_type = table.c[column].type
    if isinstance(column_type, Timestamp):
        return sqlite_timestamp_text
    # dialect_impl: a TypeDecorator's own bind_processor stops at its generic impl (a
    # DateTime that leaves datetimes as they are); SQLite's DATETIME turns them into text.
    processor: Callable[[Any], Any] | None = column_type.dialect_impl(_DIALECT).bind_processor(
        _DIALECT
    )
    return processor
