"""A stand-in for tgrelay.lanes.child in tests/lanes/test_parent.py: it speaks the same frames
(Ready after the settings, answers to Scrape), wakes the parent's `default` queue once ready,
and answers each Wake it gets with a Wake for "heard:<queue>", until its stdin closes."""

from __future__ import annotations

import pickle
import sys
from typing import BinaryIO

from tgrelay.lanes import frames


def read(stream: BinaryIO) -> object | None:
    header = stream.read(frames.LENGTH.size)
    if len(header) < frames.LENGTH.size:
        return None
    message: object = pickle.loads(stream.read(frames.LENGTH.unpack(header)[0]))  # noqa: S301
    return message


def main() -> None:
    requests, answers = sys.stdin.buffer, sys.stdout.buffer

    def answer(message: object) -> None:
        answers.write(frames.frame(message))
        answers.flush()

    if not isinstance(read(requests), frames.Start):
        raise SystemExit("expected the settings first")
    answer(frames.Ready())
    answer(frames.Wake("default"))
    while (message := read(requests)) is not None:
        if isinstance(message, frames.Wake):
            answer(frames.Wake(f"heard:{message.queue}"))
        elif isinstance(message, frames.Scrape):
            answer(frames.Samples(message.number, []))


if __name__ == "__main__":
    main()
