"""What an agent's message in a ticket's topic asks for: a command, a note, or a message to
relay. Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass

NOTE_PREFIX = "//"


class Kind(enum.Enum):
    ASSIGN = "assign"  # argument: a @username, or None for the writer
    UNASSIGN = "unassign"
    PENDING = "pending"
    RESOLVE = "resolve"  # argument: the resolution note, if any
    REOPEN = "reopen"
    CLOSE = "close"
    NOTE = "note"  # argument: the note's text
    SNIPPET = "snippet"  # argument: the snippet's name
    KB = "kb"  # argument: the words to search the knowledge base for
    RELAY = "relay"  # not a command: the message goes to the customer
    UNKNOWN = "unknown"  # argument: the command as typed
    INCOMPLETE = "incomplete"  # argument: the command missing its argument


@dataclass(frozen=True, kw_only=True)
class Command:
    kind: Kind
    argument: str | None = None


NAMES = {
    "assign": Kind.ASSIGN,
    "unassign": Kind.UNASSIGN,
    "pending": Kind.PENDING,
    "resolve": Kind.RESOLVE,
    "reopen": Kind.REOPEN,
    "close": Kind.CLOSE,
    "note": Kind.NOTE,
    "s": Kind.SNIPPET,
    "kb": Kind.KB,
}
NEEDS_ARGUMENT = frozenset({Kind.NOTE, Kind.SNIPPET, Kind.KB})

HELP = (
    "Commands in a ticket's topic:\n"
    "/assign @username — give the ticket to an agent (/assign alone: to you)\n"
    "/unassign — nobody holds it\n"
    "/pending — wait for the customer\n"
    "/resolve [note] — done (closes the topic)\n"
    "/reopen — open it again\n"
    "/close — close it for good\n"
    "/note <text> or //<text> — an internal note, not sent to the customer\n"
    "/s <name> — send a saved reply\n"
    "/kb <words> — find knowledge-base articles to send\n"
    "Anything else you write here goes to the customer."
)


def parse(text: str | None, *, bot_username: str) -> Command:
    """The command `text` is (a caption counts as text; media without one is relayed).

    `/cmd@<bot>` is accepted for this bot; a command addressed to another bot is relayed
    like any text, since it is not ours to read.
    """
    if text is None:
        return Command(kind=Kind.RELAY)
    if text.startswith(NOTE_PREFIX):
        note = text[len(NOTE_PREFIX) :].strip()
        return Command(kind=Kind.NOTE, argument=note) if note else _incomplete("//")
    if not text.startswith("/"):
        return Command(kind=Kind.RELAY)
    head, _, rest = text.partition(" ")
    name, _, addressee = head[1:].partition("@")
    if addressee and addressee.lower() != bot_username.lower():
        return Command(kind=Kind.RELAY)
    kind = NAMES.get(name.lower())
    argument = rest.strip() or None
    if kind is None:
        return Command(kind=Kind.UNKNOWN, argument=head)
    if kind in NEEDS_ARGUMENT and argument is None:
        return _incomplete(f"/{name}")
    if kind is Kind.ASSIGN and argument is not None:
        argument = argument.split()[0].removeprefix("@")
    if kind in {Kind.UNASSIGN, Kind.PENDING, Kind.REOPEN, Kind.CLOSE}:
        argument = None
    return Command(kind=kind, argument=argument)


def _incomplete(typed: str) -> Command:
    return Command(kind=Kind.INCOMPLETE, argument=typed)
