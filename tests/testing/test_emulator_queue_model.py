"""getUpdates' confirmation rules checked against a plain model on random histories."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator.state import EmulatorState

# One step: None sends an update; (choice, limit) polls with an offset picked by `choice`.
Step = tuple[int, int] | None
steps = st.lists(
    st.none() | st.tuples(st.integers(min_value=-6, max_value=12), st.integers(1, 100)),
    max_size=40,
)


def model_take(queue: list[int], offset: int, limit: int) -> tuple[list[int], list[int]]:
    """Telegram's rule as documented: returns (queue after confirming, updates answered)."""
    if offset > 0:
        queue = [u for u in queue if u >= offset]
    elif offset < 0:
        queue = queue[offset:]
    return queue, queue[:limit]


@given(steps)
def test_take_follows_telegrams_offset_rules(history: list[Step]) -> None:
    """Any mix of new updates and polls confirms and answers exactly as the model says."""
    state = EmulatorState(clock=Clock(start=datetime(2025, 1, 1, tzinfo=UTC)), rng=random.Random(1))
    bot = state.create_bot("model_bot")
    queue: list[int] = []
    answers, expected = [], []
    for step in history:
        if step is None:
            update = state.enqueue(bot.id, {"poll": {"id": "p"}})
            queue.append(update["update_id"])
            continue
        choice, limit = step
        # Offsets near the live ids matter most: negative ones count back from the end,
        # 0 confirms nothing, positive ones land around the queue.
        base = queue[0] if queue else 100_000_000
        offset = choice if choice <= 0 else base + choice - 3
        queue, answer = model_take(queue, offset, limit)
        expected.append(answer)
        answers.append([u["update_id"] for u in state.take(bot.id, offset=offset, limit=limit)])
    assert answers == expected
    assert [p.update_id for p in state.pending(bot.id)] == queue
