"""Hooks: how a lower domain tells a higher one about a change, without importing it.

The lower domain declares a `Key` typed by its listeners' signature and calls each listener
the runtime's `Hooks` holds for it, in the caller's transaction; `tgrelay.wiring` adds the
listeners, in one place (bots → groups: connections follow their bot). Imports stay one-way,
and what reacts to a change is written where it is wired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Key(Generic[T]):
    """A hook's name, typed by what its listeners are (each key is its own identity)."""

    name: str


class Hooks:
    """The listeners of each key, in the order they were added."""

    def __init__(self) -> None:
        self._listeners: dict[Key[Any], list[Any]] = {}

    def add(self, key: Key[T], listener: T) -> None:
        self._listeners.setdefault(key, []).append(listener)

    def __getitem__(self, key: Key[T]) -> Sequence[T]:
        return tuple(self._listeners.get(key, ()))
