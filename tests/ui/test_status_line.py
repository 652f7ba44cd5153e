"""The words the connect page shows for each state of a connect session."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from tgrelay.groups.models import (
    Connection,
    ConnectionStatus,
    ConnectSession,
    SessionState,
    TelegramUser,
)
from tgrelay.groups.service import SessionView
from tgrelay.ui.pages import status_line

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SESSION = ConnectSession(
    id="cs_1",
    workspace_id="ws_1",
    bot_id=42,
    token=None,
    state=SessionState.WAITING_PRIVATE,
    topic=None,
    created_at=NOW,
    expires_at=NOW,
    user=None,
    verified_at=None,
    group_started_at=None,
    connection_id=None,
)
CONNECTION = Connection(
    id="conn_1",
    workspace_id="ws_1",
    bot_id=42,
    chat_id=-100123,
    chat_type="supergroup",
    title="Ops room",
    is_forum=False,
    topic=None,
    message_thread_id=None,
    status=ConnectionStatus.ACTIVE,
    status_reason=None,
    connected_by_user_id=5001,
    session_id="cs_1",
    created_at=NOW,
    updated_at=NOW,
)
ANN = TelegramUser(id=5001, first_name="Ann", username="ann")
NAMELESS = TelegramUser(id=5002, first_name=None, username=None)


@pytest.mark.parametrize(
    ("state", "user", "connection", "expected"),
    [
        (SessionState.WAITING_PRIVATE, None, None, "Waiting for /start in a private chat"),
        (SessionState.WAITING_GROUP, ANN, None, "Verified as Ann — waiting for group"),
        (SessionState.WAITING_GROUP, NAMELESS, None, "Verified as 5002 — waiting for group"),
        (SessionState.CONNECTED, ANN, CONNECTION, "Connected to Ops room"),
        (
            SessionState.CONNECTED,
            ANN,
            replace(CONNECTION, title=None),
            "Connected to -100123",
        ),
        (SessionState.EXPIRED, None, None, "Expired"),
        (SessionState.CANCELLED, ANN, None, "Cancelled"),
    ],
)
def test_status_line_names_each_state(
    state: SessionState,
    user: TelegramUser | None,
    connection: Connection | None,
    expected: str,
) -> None:
    """Each session state reads as its sentence, naming the verified user or the group, with ids when names are missing."""
    view = SessionView(
        session=replace(SESSION, state=state, user=user),
        bot_username="alerts_bot",
        links=None,
        connection=connection,
    )
    assert status_line(view) == (state, expected)
