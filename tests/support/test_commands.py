"""An agent's message in a ticket's topic, read as a command, a note or a message to relay."""

from __future__ import annotations

import pytest

from tgrelay.support.commands import Command, Kind, parse

BOT = "desk_bot"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello there", Command(kind=Kind.RELAY)),
        (None, Command(kind=Kind.RELAY)),
        ("/assign @ada", Command(kind=Kind.ASSIGN, argument="ada")),
        ("/assign ada extra", Command(kind=Kind.ASSIGN, argument="ada")),
        ("/assign", Command(kind=Kind.ASSIGN)),
        ("/assign@desk_bot", Command(kind=Kind.ASSIGN)),
        ("/assign@Desk_Bot @ada", Command(kind=Kind.ASSIGN, argument="ada")),
        ("/unassign", Command(kind=Kind.UNASSIGN)),
        ("/kb reset password", Command(kind=Kind.KB, argument="reset password")),
        ("/kb@desk_bot  refund ", Command(kind=Kind.KB, argument="refund")),
        ("/kb", Command(kind=Kind.INCOMPLETE, argument="/kb")),
        ("/pending now", Command(kind=Kind.PENDING)),
        ("/resolve", Command(kind=Kind.RESOLVE)),
        ("/resolve refund sent", Command(kind=Kind.RESOLVE, argument="refund sent")),
        ("/reopen", Command(kind=Kind.REOPEN)),
        ("/close", Command(kind=Kind.CLOSE)),
        ("/note check the logs", Command(kind=Kind.NOTE, argument="check the logs")),
        ("//check the logs", Command(kind=Kind.NOTE, argument="check the logs")),
        ("// spaced", Command(kind=Kind.NOTE, argument="spaced")),
        ("//", Command(kind=Kind.INCOMPLETE, argument="//")),
        ("/note", Command(kind=Kind.INCOMPLETE, argument="/note")),
        ("/s refund", Command(kind=Kind.SNIPPET, argument="refund")),
        ("/s", Command(kind=Kind.INCOMPLETE, argument="/s")),
        ("/frobnicate", Command(kind=Kind.UNKNOWN, argument="/frobnicate")),
        ("/start@other_bot", Command(kind=Kind.RELAY)),
        ("/RESOLVE", Command(kind=Kind.RESOLVE)),
    ],
)
def test_topic_messages_parse(text: str | None, expected: Command) -> None:
    """Each topic message reads as its command, with `@bot` suffixes and arguments handled."""
    assert parse(text, bot_username=BOT) == expected
