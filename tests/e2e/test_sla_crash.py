"""Fault test: SIGKILL `tgrelay serve` between a ticket's opening and its SLA warning; after
the restart the warning, the breach and the step after it each happen once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tgrelay.testing.emulator_server import RunningEmulator

from .harness import eventually, free_port
from .test_crash_recovery import Server
from .test_support_crash import DUPLICATE_LOG, WAIT_SECONDS, _forum_desk, _json, _texts

ADA = {"id": 620_001, "is_bot": False, "first_name": "Ada"}
# Seconds, so that real time runs the ladder: the warning 4 s after the opening, the
# breach at 6 s, the second mention at 7 s.
POLICY = {
    "first_response": 6,
    "escalation": [
        {"warn_before_seconds": 2, "action": "mention", "users": ["@lead_agent"]},
        {"after_seconds": 1, "action": "mention", "users": ["@duty_manager"]},
    ],
}


@pytest.mark.slow
async def test_sigkill_before_the_ladder_loses_and_repeats_no_step(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """The server is killed right after a ticket opens: after the restart the lead and the
    duty manager are each mentioned once (a repeat only where a send was logged as
    possibly doubled) and the API shows the first response breached."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TGRELAY_DATA_DIR": str(tmp_path),
        "TGRELAY_SECRET_KEYS": Fernet.generate_key().decode(),
        "TGRELAY_TELEGRAM_API_URL": emulator.base_url,
        "TGRELAY_PUBLIC_URL": base_url,
        "TGRELAY_PORT": str(port),
        "TGRELAY_JOB_LEASE_SECONDS": "2",
        "TGRELAY_LOG_LEVEL": "WARNING",
    }
    created = subprocess.run(
        [sys.executable, "-m", "tgrelay", "workspace", "create", "sla-faults", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    headers = {"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"}
    log = tmp_path / "server.log"
    server = Server(env, log)
    await server.start(base_url)
    telegram = emulator.emulator
    try:
        bot = telegram.create_bot("sla_fault_bot")
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as api:
            await _json(api, "POST", "/v1/bots", json={"token": bot.token})
            forum = await _forum_desk(api, emulator, bot.id)
            [desk] = await _json(api, "GET", "/v1/support/desks")
            await _json(api, "PUT", f"/v1/support/desks/{desk['id']}/sla", json=POLICY)
            telegram.send_message(bot.id, ADA, None, "my order never arrived")

            async def ticket_id() -> str | None:
                page = await _json(api, "GET", "/v1/tickets")
                return str(page["tickets"][0]["id"]) if page["tickets"] else None

            async def opened() -> bool:
                return await ticket_id() is not None

            await eventually(opened, timeout=WAIT_SECONDS)
            server.kill()
            await server.start(base_url)

            def mentions() -> list[str]:
                return [
                    text.rsplit(" ", 1)[-1]
                    for _, text in _texts(emulator, forum, bot.id)
                    if text.startswith("⏰ SLA:")
                ]

            async def escalated() -> bool:
                return "@duty_manager" in mentions()

            await eventually(escalated, timeout=WAIT_SECONDS)
            found = await ticket_id()
            view = await _json(api, "GET", f"/v1/tickets/{found}")
    finally:
        server.stop()

    seen = mentions()
    logged = log.read_text(errors="replace").count(DUPLICATE_LOG)
    assert list(dict.fromkeys(seen)) == ["@lead_agent", "@duty_manager"]
    assert len(seen) - 2 <= logged
    [clock] = view["sla"]
    assert (clock["metric"], clock["breached_at"]) == ("first_response", clock["due_at"])
