"""`tgrelay keys rotate` and `keys check` over real rows (SQLite and PostgreSQL): every stored
secret moves to the primary key, bots' webhooks with their tokens, resumably and without
overwriting what changed meanwhile."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from tests.databases import PostgresServer
from tgrelay import crypto, keyring, wiring
from tgrelay.bots import service as bots
from tgrelay.cli import app
from tgrelay.clock import utcnow
from tgrelay.crypto import TokenCipher
from tgrelay.db import tables
from tgrelay.events import service as events
from tgrelay.observability import Metrics
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.telegram.client import TelegramClient, TelegramClients
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

runner = CliRunner()
OLD_KEY, NEW_KEY, LOST_KEY = (Fernet.generate_key().decode() for _ in range(3))
PUBLIC_URL = "https://relay.example"
OLD_FP, NEW_FP = (TokenCipher([SecretStr(k)]).key_fingerprints()[0] for k in (OLD_KEY, NEW_KEY))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(
    request: pytest.FixtureRequest, postgres: PostgresServer
) -> AsyncIterator[str | None]:
    """None: the data directory's SQLite file; else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    async with postgres.fresh_database() as url:
        yield url


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    emulator: RunningEmulator,
    database_url: str | None,
) -> None:
    """TGRELAY_* for a webhook-mode tgrelay on the emulator, with only the old key so far."""
    monkeypatch.setenv("TGRELAY_DATA_DIR", str(tmp_path / "data"))
    if database_url is None:
        monkeypatch.delenv("TGRELAY_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("TGRELAY_DATABASE_URL", database_url)
    monkeypatch.delenv("TGRELAY_REDIS_URL", raising=False)
    monkeypatch.setenv("TGRELAY_TELEGRAM_API_URL", emulator.base_url)
    monkeypatch.setenv("TGRELAY_PUBLIC_URL", PUBLIC_URL)
    monkeypatch.setenv("TGRELAY_WEBHOOKS_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("TGRELAY_SECRET_KEYS", OLD_KEY)


def use_keys(monkeypatch: pytest.MonkeyPatch, *keys: str) -> None:
    """What the operator does: a new TGRELAY_SECRET_KEYS for every process."""
    monkeypatch.setenv("TGRELAY_SECRET_KEYS", ",".join(keys))


async def tgrelay(*args: str) -> Result:
    """The CLI, off the event loop: the emulator it calls answers on this loop."""
    return await asyncio.to_thread(lambda: runner.invoke(app, list(args)))


@dataclass(frozen=True, kw_only=True)
class Scene:
    principal: Principal
    bot_ids: list[int]  # sorted, as rotate goes
    disconnected: int  # one of them
    endpoint_ids: list[str]  # sorted; the first rotated twice (previous and earlier secrets)


async def stored_scene(emulator: RunningEmulator) -> Scene:
    """Three bots connected in webhook mode (one then disconnected) and three endpoints,
    all under the keys configured now."""
    async with (
        open_runtime(Settings()) as opened,
        httpx.AsyncClient(base_url=emulator.base_url) as control,
    ):
        rt = wiring.install(opened)
        _workspace, key = await workspaces.create_workspace(rt.db, "Ops", now=rt.clock())
        principal = await workspaces.authenticate(rt.db, key)
        bot_ids = []
        for n in range(3):
            made = (await control.post("/_emulator/bots", json={"username": f"ops{n}_bot"})).json()
            bot_ids.append((await bots.connect(rt, principal, made["token"])).id)
        await bots.disconnect(rt, principal, bot_ids[-1])
        endpoint_ids = []
        for n in range(3):
            created = await events.create_endpoint(
                rt, principal, url=f"http://127.0.0.1:9/{n}", event_types=None, description=None
            )
            endpoint_ids.append(created.endpoint.id)
        endpoint_ids.sort()
        for _ in range(2):
            await events.rotate_secret(rt, principal, endpoint_ids[0])
    return Scene(
        principal=principal,
        bot_ids=sorted(bot_ids),
        disconnected=bot_ids[-1],
        endpoint_ids=endpoint_ids,
    )


Stored = dict[tuple[str, str, str], tuple[int | None, str | None]]


async def stored_secrets(rt: Runtime) -> Stored:
    """{(table, row id, column#n): (position of the key that opens it, plaintext)}."""
    found: Stored = {}
    for spec in keyring.STORED:
        for row in await keyring.read_batch(rt.db, spec):
            for n, (column, ciphertext) in enumerate(keyring.ciphertexts(spec, row)):
                position = rt.cipher.key_position(ciphertext)
                plain = None if position is None else rt.cipher.decrypt(ciphertext)
                found[(spec.table.name, str(row["id"]), f"{column}#{n}")] = (position, plain)
    return found


async def current_secrets() -> Stored:
    async with open_runtime(Settings()) as rt:
        return await stored_secrets(rt)


def moved(before: Stored, position: int) -> Stored:
    return {where: (position, plain) for where, (_, plain) in before.items()}


async def webhook_of(emulator: RunningEmulator, bot_id: int) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=emulator.base_url) as control:
        webhook: dict[str, Any] | None = (await control.get(f"/_emulator/bots/{bot_id}")).json()[
            "webhook"
        ]
        return webhook


def new_webhook_secret(bot_id: int, generation: int) -> str:
    return crypto.webhook_secret(base64.urlsafe_b64decode(NEW_KEY), bot_id, generation)


@pytest.mark.usefixtures("environment")
async def test_rotate_moves_every_secret_and_webhook_to_the_new_key(
    monkeypatch: pytest.MonkeyPatch, emulator: RunningEmulator
) -> None:
    """After `keys rotate` every token and endpoint secret opens with the new key to the same
    plaintext, and connected bots' webhooks carry the new key's secret of their next
    generation (the disconnected bot gets none); `keys check` said the old key was needed
    before, and says it is unused after (to be removed once the grace is over)."""
    scene = await stored_scene(emulator)
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)
    before = await current_secrets()
    checked_before = await tgrelay("keys", "check")
    started = utcnow()

    result = await tgrelay("keys", "rotate", "--batch-size", "2")

    finished = utcnow()
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "bots: 3 re-encrypted",
        "endpoints: 3 re-encrypted",
        "done: `tgrelay keys check` says which old keys can now be removed",
    ]
    assert await current_secrets() == moved(before, 0)
    assert len(before) == 3 + 3 + 2  # tokens, current secrets, ep 0's previous and earlier
    assert {position for position, _ in before.values()} == {1}
    connected = [b for b in scene.bot_ids if b != scene.disconnected]
    assert [(await webhook_of(emulator, b) or {}).get("secret_token") for b in connected] == [
        new_webhook_secret(b, 2) for b in connected
    ]
    assert await webhook_of(emulator, scene.disconnected) is None
    async with open_runtime(Settings()) as rt:
        accepted = await bots.intake_credentials(rt, connected[0])
        async with rt.db.engine.connect() as conn:
            log = tables.audit_log
            audited = (
                await conn.execute(
                    select(log.c.bot_id, log.c.actor, log.c.detail)
                    .where(log.c.action == "bot.secret_rotated")
                    .order_by(log.c.bot_id)
                )
            ).all()
    assert [(bot_id, actor, json.loads(detail)["reason"]) for bot_id, actor, detail in audited] == [
        (b, "system", "key rotation") for b in connected
    ]
    assert accepted is not None
    assert accepted.secrets[0] == new_webhook_secret(connected[0], 2)

    assert checked_before.exit_code == 0, checked_before.output
    assert checked_before.stdout.splitlines() == [
        f"key #1 {NEW_FP} (primary): 0 stored secrets, 0 bots' webhooks",
        f"key #2 {OLD_FP}: 8 stored secrets (bots.token_ciphertext 3, "
        "endpoints.earlier_secrets 1, endpoints.previous_secret_ciphertext 1, "
        "endpoints.secret_ciphertext 3), 2 bots' webhooks",
        "still needed: key #2; run `tgrelay keys rotate` to move everything to the primary key",
    ]
    checked_after = await tgrelay("keys", "check")
    lines = checked_after.stdout.splitlines()
    assert lines[:2] == [
        f"key #1 {NEW_FP} (primary): 8 stored secrets (bots.token_ciphertext 3, "
        "endpoints.earlier_secrets 1, endpoints.previous_secret_ciphertext 1, "
        "endpoints.secret_ciphertext 3), 2 bots' webhooks",
        f"key #2 {OLD_FP}: 0 stored secrets, 0 bots' webhooks",
    ]
    wait, _, reason = lines[2].removeprefix("wait until ").partition(" ")
    grace = timedelta(seconds=Settings().secret_grace_seconds)
    assert started + grace <= datetime.fromisoformat(wait) <= finished + grace
    assert (reason, len(lines)) == (
        "before removing an old key: a webhook secret rotated out before then may derive "
        "from it and is still accepted",
        3,
    )


@pytest.mark.usefixtures("environment")
async def test_check_says_an_old_key_can_go_once_nothing_needs_it(
    monkeypatch: pytest.MonkeyPatch, emulator: RunningEmulator
) -> None:
    """With no grace running, `keys check` names the old key as removable, in text and JSON."""
    monkeypatch.setenv("TGRELAY_SECRET_GRACE_SECONDS", "0")
    await stored_scene(emulator)
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)
    assert (await tgrelay("keys", "rotate")).exit_code == 0

    text, as_json = await tgrelay("keys", "check"), await tgrelay("keys", "check", "--json")

    assert text.stdout.splitlines()[2:] == [
        f"can be removed from TGRELAY_SECRET_KEYS: key #2 {OLD_FP}"
    ]
    assert [(k["position"], k["removable"]) for k in json.loads(as_json.stdout)["keys"]] == [
        (1, False),
        (2, True),
    ]


class Interrupted(Exception):
    """Stands for the process dying between two batches."""


@pytest.mark.usefixtures("environment")
async def test_an_interrupted_rotation_resumes_where_it_stopped(
    monkeypatch: pytest.MonkeyPatch, emulator: RunningEmulator
) -> None:
    """A second run skips the rows the first one finished (their webhooks are not registered
    again: generation 2, not 3) and completes the rest."""
    scene = await stored_scene(emulator)
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)
    before = await current_secrets()
    looked_at = 0

    def die_after_two(rows: int) -> None:
        nonlocal looked_at
        looked_at += rows
        if looked_at == 2:
            raise Interrupted

    async with open_runtime(Settings()) as opened:
        with pytest.raises(Interrupted):
            await keyring.rotate(wiring.install(opened), progress=die_after_two, batch_size=2)
        halfway = await stored_secrets(opened)
    result = await tgrelay("keys", "rotate", "--batch-size", "2")

    assert [halfway[("bots", str(b), "token_ciphertext#0")][0] for b in scene.bot_ids] == [0, 0, 1]
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        "bots: 2 already under the primary key; 1 re-encrypted",
        "endpoints: 3 re-encrypted",
    ]
    assert await current_secrets() == moved(before, 0)
    assert [(await webhook_of(emulator, b) or {}).get("secret_token") for b in scene.bot_ids] == [
        None if b == scene.disconnected else new_webhook_secret(b, 2) for b in scene.bot_ids
    ]


@pytest.mark.usefixtures("environment")
async def test_a_secret_rotated_meanwhile_is_not_overwritten(
    monkeypatch: pytest.MonkeyPatch, emulator: RunningEmulator
) -> None:
    """A batch read before serve rotated an endpoint's secret writes the other rows but not
    that one; the next reading moves it, so the new secret survives, under the new key."""
    scene = await stored_scene(emulator)
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)
    async with open_runtime(Settings()) as opened:
        rt = wiring.install(opened)
        stale = await keyring.read_batch(rt.db, keyring.ENDPOINTS, limit=10)
        rotated = await events.rotate_secret(rt, scene.principal, scene.endpoint_ids[1])
        done = keyring.Rotation()

        changed = await keyring.write_batch(rt, keyring.ENDPOINTS, stale, done)

        after_batch = await stored_secrets(rt)
        await keyring.rotate(rt)
        after_rotation = await stored_secrets(rt)
    current = ("endpoints", scene.endpoint_ids[1], "secret_ciphertext#0")
    assert [row["id"] for row in changed] == [scene.endpoint_ids[1]]
    assert done.outcomes == {"endpoints": {"done": 2, "already": 0}}
    assert after_batch[current] == (0, rotated.secret)
    assert after_rotation[current] == (0, rotated.secret)
    assert {position for position, _ in after_rotation.values()} == {0}


class Interleaved(TelegramClients):
    """Telegram as rekey sees it: its first setWebhook waits until `meanwhile` (what a
    running serve does at that moment) is done."""

    def __init__(self, api_url: str, meanwhile: Callable[[], Awaitable[None]]) -> None:
        super().__init__(api_url, Metrics())
        self.meanwhile: Callable[[], Awaitable[None]] | None = meanwhile

    def for_token(self, token: str) -> TelegramClient:
        return _SetWebhookAfter(super().for_token(token), self)


class _SetWebhookAfter(TelegramClient):
    def __init__(self, inner: TelegramClient, clients: Interleaved) -> None:
        self._inner, self._clients = inner, clients  # a wrapper: no client of its own

    async def set_webhook(self, **arguments: Any) -> None:
        meanwhile, self._clients.meanwhile = self._clients.meanwhile, None
        if meanwhile is not None:
            await meanwhile()
        await self._inner.set_webhook(**arguments)


@pytest.mark.usefixtures("environment")
async def test_a_token_rotated_meanwhile_is_not_put_back(
    monkeypatch: pytest.MonkeyPatch, emulator: RunningEmulator
) -> None:
    """A bot whose token serve rotates while rekey talks to Telegram is left alone (CHANGED):
    the new token stays, and read again it needs nothing (serve stored it under the new key,
    with the new key's webhook secret)."""
    scene = await stored_scene(emulator)
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)
    bot_id = next(b for b in scene.bot_ids if b != scene.disconnected)
    async with (
        open_runtime(Settings()) as opened,
        httpx.AsyncClient(base_url=emulator.base_url) as control,
    ):
        serve = wiring.install(opened)
        new_token = (await control.post(f"/_emulator/bots/{bot_id}/rotate")).json()["token"]

        async def serve_rotates_the_token() -> None:
            await bots.rotate_token(serve, scene.principal, bot_id, new_token)

        rekeying = dataclasses.replace(
            serve, telegram=Interleaved(emulator.base_url, serve_rotates_the_token)
        )
        first = await bots.rekey(rekeying, bot_id)
        again = await bots.rekey(rekeying, bot_id)
        token = await bots.token_of(serve, bot_id)
        await rekeying.telegram.aclose()
    assert (first, again, token) == (bots.Rekeyed.CHANGED, bots.Rekeyed.ALREADY, new_token)
    webhook = await webhook_of(emulator, bot_id)
    assert webhook is not None
    assert webhook["secret_token"] == new_webhook_secret(bot_id, 2)


@pytest.mark.usefixtures("environment")
async def test_an_undecryptable_secret_stops_rotate_naming_its_row(
    monkeypatch: pytest.MonkeyPatch, emulator: RunningEmulator
) -> None:
    """A secret under a key no longer configured ends `keys rotate` with status 1 naming the
    table, row and column; the rows before it stay moved, that row stays as it was, and
    `keys check` counts it as undecryptable (status 1)."""
    scene = await stored_scene(emulator)
    last = scene.endpoint_ids[-1]
    lost = TokenCipher([SecretStr(LOST_KEY)]).encrypt("whsec_lost")
    async with open_runtime(Settings()) as rt, rt.db.transaction() as conn:
        await conn.execute(
            update(tables.endpoints)
            .where(tables.endpoints.c.id == last)
            .values(previous_secret_ciphertext=lost)
        )
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)
    before = await current_secrets()

    result = await tgrelay("keys", "rotate", "--batch-size", "1")
    checked = await tgrelay("keys", "check")

    after = await current_secrets()
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: endpoints row {last}: previous_secret_ciphertext cannot be decrypted with any "
        "key in TGRELAY_SECRET_KEYS (was the key it was encrypted under removed?). The 5 rows "
        "looked at before it stay done; put its key back in TGRELAY_SECRET_KEYS (any "
        "position) and run again"
    )
    assert {where: position for where, (position, _) in after.items()} == {
        where: (position if where[1] == last else 0) for where, (position, _) in before.items()
    }
    assert before[("endpoints", last, "previous_secret_ciphertext#1")] == (None, None)
    assert checked.exit_code == 1, checked.output
    assert checked.stdout.splitlines()[2] == (
        "1 stored secrets open with no configured key (0 of them bots' webhooks): "
        "a key they need is missing"
    )


@pytest.mark.usefixtures("environment")
async def test_bots_telegram_cannot_move_now_are_left_for_a_later_run(
    monkeypatch: pytest.MonkeyPatch, emulator: RunningEmulator
) -> None:
    """A bot within a token rotation's grace is left (its previous secret may still be in
    flight), a revoked token is only re-encrypted (Telegram dropped its webhook), and
    `keys rotate` ends with status 1 asking for another run."""
    scene = await stored_scene(emulator)
    in_grace, revoked = [b for b in scene.bot_ids if b != scene.disconnected]
    async with (
        open_runtime(Settings()) as opened,
        httpx.AsyncClient(base_url=emulator.base_url) as control,
    ):
        new_token = (await control.post(f"/_emulator/bots/{in_grace}/rotate")).json()["token"]
        await bots.rotate_token(wiring.install(opened), scene.principal, in_grace, new_token)
        await control.post(f"/_emulator/bots/{revoked}/revoke")
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)

    result = await tgrelay("keys", "rotate")

    after = await current_secrets()
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[1:] == [
        "endpoints: 3 re-encrypted",
        "some rows are still under an old key: run `tgrelay keys rotate` again",
    ]
    assert sorted(result.stdout.splitlines()[0].removeprefix("bots: ").split("; ")) == [
        "1 in a webhook secret's grace period (left for a later run)",
        "2 re-encrypted",
    ]
    assert [after[("bots", str(b), "token_ciphertext#0")][0] for b in (in_grace, revoked)] == [1, 0]
    assert (await webhook_of(emulator, in_grace) or {}).get(
        "secret_token"
    ) == crypto.webhook_secret(base64.urlsafe_b64decode(OLD_KEY), in_grace, 2)


@pytest.mark.usefixtures("environment")
async def test_bots_are_left_while_telegram_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, emulator: RunningEmulator
) -> None:
    """Without Telegram, bots whose webhook we hold keep their old key (token and webhook
    together); the rest moves, and `keys check` still needs the old key."""
    scene = await stored_scene(emulator)
    use_keys(monkeypatch, NEW_KEY, OLD_KEY)
    monkeypatch.setenv("TGRELAY_TELEGRAM_API_URL", "http://127.0.0.1:9")

    result = await tgrelay("keys", "rotate")
    checked = await tgrelay("keys", "check")

    after = await current_secrets()
    assert result.exit_code == 1, result.output
    assert sorted(result.stdout.splitlines()[0].removeprefix("bots: ").split("; ")) == [
        "1 re-encrypted",
        "2 not re-registered: Telegram unreachable (left for a later run)",
    ]
    assert {b: after[("bots", str(b), "token_ciphertext#0")][0] for b in scene.bot_ids} == {
        b: 0 if b == scene.disconnected else 1 for b in scene.bot_ids
    }
    assert checked.stdout.splitlines()[1:] == [
        f"key #2 {OLD_FP}: 2 stored secrets (bots.token_ciphertext 2), 2 bots' webhooks",
        "still needed: key #2; run `tgrelay keys rotate` to move everything to the primary key",
    ]
