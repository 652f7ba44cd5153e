"""The API around stored updates: workspace isolation, dead updates re-run, operations routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces

from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

ANN = {"id": 5001, "is_bot": False, "first_name": "Ann"}


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    port = free_port()
    async with running_tgrelay(
        settings_for(emulator, tmp_path, webhook=True, port=port), port
    ) as relay:
        yield relay


async def test_other_workspace_gets_404_for_updates(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A key of another workspace gets 404 for a bot's updates and its retry route; no key gets 401."""
    bot = emulator.emulator.create_bot("relay_bot")
    await relay.connect_bot(bot.token)
    rt = relay.runtime
    _, other_key = await workspaces.create_workspace(rt.db, "other team", now=rt.clock())
    async with httpx.AsyncClient(base_url=relay.base_url) as client:
        foreign = {"Authorization": f"Bearer {other_key}"}
        listed = await client.get(f"/v1/bots/{bot.id}/updates", headers=foreign)
        retried = await client.post(f"/v1/bots/{bot.id}/updates/1/retry", headers=foreign)
        anonymous = await client.get(f"/v1/bots/{bot.id}/updates")
        forged = await client.get(
            f"/v1/bots/{bot.id}/updates", headers={"Authorization": "Bearer tgr_nope"}
        )
    assert [listed.status_code, retried.status_code, anonymous.status_code, forged.status_code] == [
        404,
        404,
        401,
        401,
    ]
    assert listed.headers["content-type"] == "application/problem+json"


async def test_unprocessable_update_goes_dead_and_can_be_rerun(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """An update Telegram's types cannot parse is stored, becomes dead, is listed as dead, and re-runs on request."""
    bot = emulator.emulator.create_bot("relay_bot")
    await relay.connect_bot(bot.token)
    broken = emulator.emulator.inject_update(bot.id, {"message": {"text": "no chat, no date"}})
    good = emulator.emulator.send_message(bot.id, ANN, None, "fine")

    async def settled() -> bool:
        return [u["status"] for u in await relay.updates(bot.id)] == ["dead", "processed"]

    await eventually(settled)
    dead = await relay.updates(bot.id, status="dead")
    assert [(u["update_id"], u["kind"]) for u in dead] == [(broken["update_id"], "message")]
    assert dead[0]["last_error"] == (
        "tgrelay.queue.retry.PermanentFailure: not a valid Telegram Update: 3 errors"
    )

    again = await relay.api.post(f"/v1/bots/{bot.id}/updates/{broken['update_id']}/retry")
    assert (again.status_code, again.json()["status"]) == (200, "pending")
    await eventually(settled)
    not_dead = await relay.api.post(f"/v1/bots/{bot.id}/updates/{good['update_id']}/retry")
    assert not_dead.status_code == 409


async def test_updates_are_paged_in_update_id_order(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """`after` and `limit` walk the stored updates in ascending update_id order."""
    bot = emulator.emulator.create_bot("relay_bot")
    await relay.connect_bot(bot.token)
    sent = [
        emulator.emulator.send_message(bot.id, ANN, None, f"m{i}")["update_id"] for i in range(5)
    ]

    async def all_stored() -> bool:
        return len(await relay.updates(bot.id)) == 5

    await eventually(all_stored)
    first = (await relay.api.get(f"/v1/bots/{bot.id}/updates", params={"limit": 2})).json()
    second = (
        await relay.api.get(
            f"/v1/bots/{bot.id}/updates", params={"limit": 2, "after": first["next_after"]}
        )
    ).json()
    too_many = await relay.api.get(f"/v1/bots/{bot.id}/updates", params={"limit": 1001})
    assert [u["update_id"] for u in first["updates"] + second["updates"]] == sent[:4]
    assert too_many.status_code == 422


async def test_operations_routes(relay: Tgrelay, emulator: RunningEmulator) -> None:
    """healthz and readyz answer, and /metrics exports intake, job and Telegram API metrics."""
    bot = emulator.emulator.create_bot("relay_bot")
    await relay.connect_bot(bot.token)
    emulator.emulator.send_message(bot.id, ANN, None, "count me")

    async def processed() -> bool:
        return [u["status"] for u in await relay.updates(bot.id)] == ["processed"]

    await eventually(processed)
    async with httpx.AsyncClient(base_url=relay.base_url) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    assert (health.json(), ready.json()) == ({"status": "ok"}, {"status": "ready"})
    for line in [
        'tgrelay_updates_received_total{outcome="stored",source="webhook"} 1.0',
        'tgrelay_jobs{state="done"} 1.0',
        'tgrelay_telegram_api_calls_total{method="getMe",outcome="ok"} 1.0',
        "tgrelay_intake_latency_seconds_count 1.0",
        'tgrelay_job_run_seconds_count{kind="process_update",outcome="done"} 1.0',
        # The update's one intake transaction; its processing and the API's are counted too,
        # each under its writer.
        'tgrelay_sqlite_write_lock_seconds_count{writer="intake"} 1.0',
        'tgrelay_sqlite_write_lock_seconds_count{writer="updates"} ',
        'tgrelay_sqlite_write_lock_seconds_count{writer="transactions"} ',
    ]:
        assert line in metrics


async def test_metrics_token_guards_metrics(emulator: RunningEmulator, tmp_path: Path) -> None:
    """With TGRELAY_METRICS_TOKEN set, /metrics answers 401 without its bearer (or with another)
    and the Prometheus text with it; the health routes stay open."""
    port = free_port()
    settings = settings_for(emulator, tmp_path, webhook=False, port=port, metrics_token="scrape-me")
    async with (
        running_tgrelay(settings, port) as relay,
        httpx.AsyncClient(base_url=relay.base_url) as client,
    ):
        missing = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer scrape-you"})
        bare = await client.get("/metrics", headers={"Authorization": "scrape-me"})
        right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        health = await client.get("/healthz")
    assert [r.status_code for r in (missing, wrong, bare, right, health)] == [
        401,
        401,
        401,
        200,
        200,
    ]
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "scrape-me" not in missing.text
    assert "tgrelay_jobs" in right.text


async def test_refused_endpoint_url_names_the_setting_that_allows_it(relay: Tgrelay) -> None:
    """POST /v1/endpoints with a loopback URL (or localhost) answers 422 problem+json whose detail names TGRELAY_WEBHOOKS_ALLOW_PRIVATE and TGRELAY_WEBHOOKS_ALLOWED_NETWORKS; a metadata address names no setting; nothing is created."""
    answers = [
        await relay.api.post("/v1/endpoints", json={"url": url})
        for url in (
            "http://127.0.0.1:8081/hook",
            "http://localhost:8081/hook",
            "http://169.254.169.254/latest/meta-data/",
        )
    ]
    listed = await relay.api.get("/v1/endpoints")

    assert [a.headers["content-type"] for a in answers] == ["application/problem+json"] * 3
    assert [a.json() for a in answers] == [
        {
            "type": "about:blank",
            "title": "TargetRefused",
            "status": 422,
            "detail": "webhook target refused: 127.0.0.1 is a loopback address; to deliver to "
            "a receiver on this machine or your network, set "
            "TGRELAY_WEBHOOKS_ALLOW_PRIVATE=true, or "
            "TGRELAY_WEBHOOKS_ALLOWED_NETWORKS=127.0.0.1/32 for this address alone",
        },
        {
            "type": "about:blank",
            "title": "TargetRefused",
            "status": 422,
            "detail": "webhook target refused: localhost is a loopback name; to deliver to a "
            "receiver on this machine, set TGRELAY_WEBHOOKS_ALLOW_PRIVATE=true, or write "
            "127.0.0.1 and set TGRELAY_WEBHOOKS_ALLOWED_NETWORKS=127.0.0.1/32 for that "
            "address alone",
        },
        {
            "type": "about:blank",
            "title": "TargetRefused",
            "status": 422,
            "detail": "webhook target refused: "
            "169.254.169.254 is a link-local address (cloud metadata)",
        },
    ]
    assert (listed.status_code, listed.json()) == (200, [])
