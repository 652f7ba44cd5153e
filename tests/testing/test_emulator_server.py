"""Serving the emulator: one instance can be served, closed and served again."""

from __future__ import annotations

import logging

from tgrelay.testing.emulator import Emulator
from tgrelay.testing.emulator_server import RedactTokens, running_emulator
from tgrelay.testing.receiver import receiving

from .conftest import ALICE, FAST_RETRY


async def test_served_again_after_closing_resumes_pushes() -> None:
    """Updates queued while the emulator is closed are pushed once it is served again."""
    emulator = Emulator(retry=FAST_RETRY)
    record = emulator.create_bot("relay_bot")
    async with running_emulator(emulator=emulator):
        pass
    async with receiving() as running:
        emulator.set_webhook(record.id, running.url)
        update = emulator.send_message(record.id, ALICE, None, "while closed")
        queued = emulator.pending_updates(record.id)
        async with running_emulator(emulator=emulator):
            [delivery] = await running.receiver.wait_for(1)
            await emulator.wait_until_delivered(record.id)
    assert (queued, delivery.json(), emulator.pending_updates(record.id)) == (
        [update],
        update,
        [],
    )


def test_access_log_lines_hide_tokens() -> None:
    """The access-log filter of `tgrelay emulator` masks the token in Bot API paths."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/bot123%3AAbC-_x/getMe?x=1", "1.1", 200),
        None,
    )
    kept = RedactTokens().filter(record)
    assert (kept, record.getMessage()) == (
        True,
        '127.0.0.1:5000 - "POST /bot123:…/getMe?x=1 HTTP/1.1" 200',
    )
