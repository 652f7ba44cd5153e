"""What the serving process and its webhooks lane child tell each other, over pipes.

Frames are a 4-byte length and a pickle: both ends are the same installed tgrelay, started by
the parent itself, so nothing untrusted is ever unpickled (the settings, secrets included,
travel here rather than on a command line another user could read).
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from dataclasses import dataclass
from typing import Any

from tgrelay.settings import Settings

LENGTH = struct.Struct("!I")


@dataclass(frozen=True)
class Start:
    """Parent → child, first: what to run with."""

    settings: Settings


@dataclass(frozen=True)
class Ready:
    """Child → parent: the lane's worker is running."""


@dataclass(frozen=True)
class Wake:
    """Either way: jobs of `queue` were enqueued; its worker should claim now."""

    queue: str


@dataclass(frozen=True)
class Scrape:
    """Parent → child: send your metrics (answered by a Samples with the same number)."""

    number: int


@dataclass(frozen=True)
class Samples:
    """Child → parent: its registry's families (prometheus_client Metric objects)."""

    number: int
    families: list[Any]


def frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(body)) + body


async def read(reader: asyncio.StreamReader) -> object | None:
    """The next message, or None once the other end has closed its side."""
    try:
        header = await reader.readexactly(LENGTH.size)
        body = await reader.readexactly(LENGTH.unpack(header)[0])
    except asyncio.IncompleteReadError:
        return None
    message: object = pickle.loads(body)  # noqa: S301 (our own parent or child: see above)
    return message
