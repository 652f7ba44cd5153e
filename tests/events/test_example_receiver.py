"""examples/receiver.py, the receiver customers copy, accepts what tgrelay signs exactly once."""

from __future__ import annotations

import importlib.util
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tgrelay.http import signing

RECEIVER = Path(__file__).parents[2] / "examples" / "receiver.py"
SECRET = signing.generate_secret()
EVENT = {
    "id": "evt_2x4Yq8",
    "type": "message.received",
    "timestamp": "2026-11-21T12:00:00Z",
    "workspace_id": "ws_7Hk2",
    "data": {"text": "привет"},
}
BODY = json.dumps(EVENT, ensure_ascii=False)
MSG_ID = "evt_2x4Yq8"  # tgrelay's webhook-id is the event's id


def load_receiver() -> ModuleType:
    """Import the example from its file, as `uvicorn examples.receiver:app` would."""
    spec = importlib.util.spec_from_file_location("example_receiver", RECEIVER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "receiver.db"
    monkeypatch.setenv("TGRELAY_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("RECEIVER_DB", str(path))
    return path


@pytest.fixture
def receiver(db_path: Path) -> ModuleType:
    return load_receiver()


@pytest.fixture
async def client(receiver: ModuleType) -> AsyncIterator[httpx.AsyncClient]:
    # App exceptions become 500 responses, as uvicorn would send them.
    transport = httpx.ASGITransport(app=receiver.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client


def signed(secrets: list[str]) -> dict[str, str]:
    return signing.headers(secrets, msg_id=MSG_ID, timestamp=datetime.now(UTC), body=BODY)


def seen(db_path: Path) -> list[tuple[str]]:
    with closing(sqlite3.connect(db_path)) as db:
        return db.execute("SELECT webhook_id FROM seen ORDER BY webhook_id").fetchall()


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "receiver"]


async def test_handles_a_webhook_once_and_acknowledges_its_repeat(
    client: httpx.AsyncClient, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A signed event is handled and answered 200; its retry (same webhook-id) gets 200 as a duplicate."""
    caplog.set_level(logging.INFO, logger="receiver")
    headers = signed([SECRET])
    first = await client.post("/webhooks/tgrelay", headers=headers, content=BODY.encode())
    again = await client.post("/webhooks/tgrelay", headers=headers, content=BODY.encode())
    assert [(first.status_code, first.json()), (again.status_code, again.json())] == [
        (200, {"duplicate": False}),
        (200, {"duplicate": True}),
    ]
    assert seen(db_path) == [(MSG_ID,)]
    assert logged(caplog) == [
        "event evt_2x4Yq8 type=message.received workspace=ws_7Hk2",
        f"duplicate webhook-id={MSG_ID}",
    ]


async def test_accepts_a_rotation_header(
    client: httpx.AsyncClient, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """During a secret rotation the receiver, holding either secret, accepts the doubly signed message."""
    caplog.set_level(logging.INFO, logger="receiver")
    response = await client.post(
        "/webhooks/tgrelay", headers=signed([signing.generate_secret(), SECRET]), content=BODY
    )
    assert (response.status_code, response.json()) == (200, {"duplicate": False})
    assert seen(db_path) == [(MSG_ID,)]
    assert logged(caplog) == ["event evt_2x4Yq8 type=message.received workspace=ws_7Hk2"]


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (lambda: signed([signing.generate_secret()]), BODY),
        (lambda: signed([SECRET]), BODY.replace("привет", "пока")),
        (lambda: {**signed([SECRET]), "webhook-signature": "garbled"}, BODY),
        (lambda: {**signed([SECRET]), "webhook-timestamp": "1614265330"}, BODY),
        (lambda: {"content-type": "application/json"}, BODY),
    ],
    ids=["wrong-secret", "tampered-body", "garbled-signature", "old-timestamp", "unsigned"],
)
async def test_refuses_what_does_not_verify(
    client: httpx.AsyncClient,
    db_path: Path,
    caplog: pytest.LogCaptureFixture,
    headers: Callable[[], dict[str, str]],
    body: str,
) -> None:
    """A webhook that fails verification gets 400 and is neither recorded nor handled."""
    caplog.set_level(logging.INFO, logger="receiver")
    response = await client.post("/webhooks/tgrelay", headers=headers(), content=body.encode())
    assert (response.status_code, response.json()) == (400, {"error": "invalid signature"})
    assert seen(db_path) == []
    assert logged(caplog) == []


async def test_a_failed_handler_leaves_the_webhook_to_be_retried(
    client: httpx.AsyncClient,
    receiver: ModuleType,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When handling fails the answer is 500 and the webhook-id is not kept, so tgrelay's retry is handled."""
    caplog.set_level(logging.INFO, logger="receiver")
    headers = signed([SECRET])
    handle = receiver.handle

    def broken(event: dict[str, object]) -> None:
        raise RuntimeError("the database is down")

    monkeypatch.setattr(receiver, "handle", broken)
    failed = await client.post("/webhooks/tgrelay", headers=headers, content=BODY)
    assert (failed.status_code, seen(db_path)) == (500, [])

    monkeypatch.setattr(receiver, "handle", handle)
    retried = await client.post("/webhooks/tgrelay", headers=headers, content=BODY)
    assert (retried.status_code, retried.json()) == (200, {"duplicate": False})
    assert seen(db_path) == [(MSG_ID,)]
    assert logged(caplog) == ["event evt_2x4Yq8 type=message.received workspace=ws_7Hk2"]


def test_refuses_to_start_without_a_secret(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without TGRELAY_WEBHOOK_SECRET the receiver does not start (it would accept nothing)."""
    monkeypatch.delenv("TGRELAY_WEBHOOK_SECRET")
    with pytest.raises(SystemExit, match="set TGRELAY_WEBHOOK_SECRET"):
        load_receiver()
