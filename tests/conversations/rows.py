"""Conversation rows written with the store as the runtime writes them, for the tests of
the API and the pages that read them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from tgrelay.conversations import store
from tgrelay.conversations.models import AbandonReason, Facts, State, Status
from tgrelay.db.engine import Database

# A transition: from step (None: started), to step (None: ended), the input summary.
Move = tuple[str | None, str | None, str]


async def write_conversation(
    db: Database,
    workspace_id: str,
    conversation_id: str,
    *,
    started_at: datetime,
    flow: str = "billing",
    user_id: int = 7001,
    step: str = "card",
    status: Status = Status.ACTIVE,
    reason: AbandonReason | None = None,
    variables: dict[str, Any] | None = None,
    moves: Sequence[Move] = (),
) -> None:
    """A conversation of the flow's newest version, its transitions a second apart."""
    ended = status in (Status.COMPLETED, Status.ABANDONED)
    async with db.transaction() as conn:
        found = await store.latest_version(conn, workspace_id, flow)
        assert found is not None
        state = State(
            flow=flow,
            version=found.version,
            step=step,
            variables=variables or {},
            tries=0,
            status=status,
            facts=Facts(user_id=user_id, chat_id=user_id, first_name="Ann", username="ann"),
            started_at=started_at,
            last_input_at=started_at,
            reason=reason,
        )
        await store.add_conversation(
            conn,
            {
                "id": conversation_id,
                "workspace_id": workspace_id,
                "flow_id": found.id,
                "flow_name": flow,
                "bot_id": 42,
                "chat_id": user_id,
                "user_id": user_id,
                "status": status.value,
                "step_id": None if ended else step,
                "state": state.model_dump_json(),
                "end_reason": None if reason is None else reason.value,
                "started_at": started_at,
                "updated_at": started_at,
                "ended_at": started_at if ended else None,
            },
        )
        for second, (source, target, summary) in enumerate(moves):
            await store.add_transition(
                conn,
                {
                    "conversation_id": conversation_id,
                    "from_step": source,
                    "to_step": target,
                    "input_summary": summary,
                    "at": started_at + timedelta(seconds=second),
                },
            )
