"""One Bot API call and its successful answer: what every method handler takes and gives."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tgrelay.testing.emulator.params import Params

if TYPE_CHECKING:
    from tgrelay.testing.emulator.service import Emulator
    from tgrelay.testing.emulator.state import BotRecord


@dataclass(frozen=True, kw_only=True)
class Call:
    """One Bot API call: who makes it and with what."""

    emulator: Emulator
    bot: BotRecord
    token: str
    params: Params


@dataclass(frozen=True)
class Answer:
    """A successful result, with the `description` Telegram adds to some of them."""

    result: Any
    description: str | None = None


Method = Callable[[Call], Awaitable[Answer]]
