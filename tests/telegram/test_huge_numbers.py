"""Finding numbers beyond 64 bits in raw updates, as the intake and the poller judge them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tgrelay.telegram import updates


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"update_id":1,"message":{"chat":{"id":-1001234567890}}}', None),
        (b'{"update_id":1,"message":{"chat":{"id":1180591620717411303424}}}', "message.chat.id"),
        (b'{"update_id":1,"message":{"from":{"id":9223372036854775808}}}', "message.from.id"),
        (b'{"update_id":1,"message":{"chat":{"id":-9223372036854775809}}}', "message.chat.id"),
        (b'{"update_id":1,"message":{"chat":{"id":-9223372036854775808}}}', None),
        (
            b'{"update_id":1,"message":{"entities":[{"offset":0},{"offset":1e30}]}}',
            "message.entities[1].offset",
        ),
        (b'{"update_id":1,"message":{"location":{"latitude":52.5,"longitude":1e2}}}', None),
        (
            b'{"update_id":1,"poll":{"options":[{"voter_count":1e19}]}}',
            "poll.options[0].voter_count",
        ),
        (b'{"update_id":1,"message":{"text":"12345678901234567890123","ok":true}}', None),
    ],
)
def test_huge_number_at(body: bytes, where: str | None) -> None:
    """The walk names the first field beyond the 64-bit integers, and the byte scan never
    misses a body the walk would refuse."""
    data: Any = orjson.loads(body)
    found = updates.huge_number_at(data)
    assert (found, updates.may_hold_huge_numbers(body) or found is None) == (where, True)


def test_scan_skips_ordinary_updates() -> None:
    """A plain message (short ids, no exponent) needs no walk."""
    body = b'{"update_id":10,"message":{"message_id":3,"chat":{"id":-100777},"text":"hi"}}'
    assert updates.may_hold_huge_numbers(body) is False
