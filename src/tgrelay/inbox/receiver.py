"""`POST /telegram/{bot_id}`: the webhook intake, a lean ASGI handler on the hot path.

Order of checks: route → source address (when TGRELAY_TELEGRAM_SOURCE_NETWORKS is set) →
secret (constant time) → size → JSON with an integer update_id and no number beyond 64 bits
→ group commit → 200. No full Update parsing here: the worker does that.

A refused request costs a count in memory (inbox.rejections tallies the audit rows; a bot
flooded with forged requests trips inbox.secret_breaker), never a write of its own. An unknown
bot and a wrong secret get the same answer after the same work, so the 401 cannot tell
anyone which bot ids this instance serves.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import orjson
import structlog
from starlette.types import Message, Receive, Scope, Send

from tgrelay import errors
from tgrelay.inbox.credentials import CredentialCache
from tgrelay.inbox.models import IncomingUpdate, UpdateSource
from tgrelay.inbox.rejections import RejectionTally
from tgrelay.inbox.secret_breaker import SecretBreaker
from tgrelay.inbox.sources import SourceNetworks
from tgrelay.inbox.writer import GroupCommitWriter
from tgrelay.runtime import Runtime
from tgrelay.telegram import updates as update_facts

log = structlog.get_logger(__name__)

SECRET_HEADER = b"x-telegram-bot-api-secret-token"
# Compared against when a bot is unknown, so that answer takes as long as a wrong secret.
_DUMMY_SECRET = b"x" * 43
_MAX_INT64 = update_facts.INT64_MAX
HUGE_NUMBER = "a number is beyond the 64-bit integers"
# The one answer to a push we cannot authenticate: an unknown bot id and a wrong secret alike.
NOT_AUTHENTICATED = "unknown bot or wrong secret token"


class Rejection(Exception):
    """A request the intake refuses; its status and reason go to the client and the audit."""

    def __init__(self, status: int, reason: str, *, audited: bool = True) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.audited = audited


class Forged(Rejection):
    """A push without a secret the bot accepts (or for a bot we do not serve)."""

    def __init__(self, workspace_id: str | None) -> None:
        super().__init__(401, NOT_AUTHENTICATED)
        self.workspace_id = workspace_id  # the bot's, when we serve it


class WebhookReceiver:
    def __init__(
        self,
        rt: Runtime,
        writer: GroupCommitWriter,
        *,
        rejections: RejectionTally,
        breaker: SecretBreaker,
    ) -> None:
        self._rt = rt
        self._writer = writer
        self._rejections = rejections
        self._breaker = breaker
        self._credentials = CredentialCache(rt)
        self._max_bytes = rt.settings.max_update_bytes
        networks = rt.settings.telegram_source_networks
        self._sources = SourceNetworks(networks) if networks else None
        # Metric children bound once: labels() costs a lock and a lookup per call.
        received = rt.metrics.updates_received
        self._stored = received.labels("webhook", "stored")
        self._duplicate = received.labels("webhook", "duplicate")
        self._failed = received.labels("webhook", "error")
        self._forged = received.labels("webhook", "rejected_401")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        bot_id: int | None = None
        workspace_id: str | None = None
        try:
            bot_id = _bot_id_of(scope["path"])
            if self._sources is not None and not self._sources.admits(_client_host(scope)):
                # Not audited: a flood from anywhere must not grow the database.
                raise Rejection(403, "not from Telegram's networks", audited=False)
            if scope["method"] != "POST":
                raise Rejection(405, "only POST is accepted", audited=False)
            workspace_id = await self._authenticate(bot_id, scope)
            body = await _read_body(receive, scope, self._max_bytes)
            update = _parse(body, bot_id, self._rt)
            created = await self._writer.store(update)
        except Rejection as rejection:
            if isinstance(rejection, Forged):
                workspace_id = rejection.workspace_id
            self._reject(scope, bot_id, workspace_id, rejection)
            if isinstance(rejection, Forged):
                await _respond_not_authenticated(send)
            else:
                await _respond(send, rejection.status, rejection.reason)
            return
        except errors.StorageUnavailable:
            # Telegram retries non-2xx answers, so nothing is lost by refusing now.
            self._failed.inc()
            await _respond(send, 503, "storage unavailable, retry later")
            return
        (self._stored if created else self._duplicate).inc()
        self._rt.metrics.intake_latency.observe(time.perf_counter() - started)
        await _respond_stored(send)

    async def _authenticate(self, bot_id: int, scope: Scope) -> str:
        """The bot's workspace when the secret header matches one of the bot's; Forged
        otherwise, the same for a bot we do not serve."""
        presented = b""
        for name, value in scope["headers"]:
            if name == SECRET_HEADER:
                presented = value
                break
        credentials = await self._credentials.get(bot_id)
        accepted = credentials.secrets if credentials is not None else (_DUMMY_SECRET,)
        matched = False
        for secret in accepted:
            # compare_digest on bytes runs in time independent of where they differ.
            matched |= hmac.compare_digest(presented, secret)
        if credentials is None or not matched:
            raise Forged(None if credentials is None else credentials.workspace_id)
        return credentials.workspace_id

    def _reject(
        self, scope: Scope, bot_id: int | None, workspace_id: str | None, rejection: Rejection
    ) -> None:
        if isinstance(rejection, Forged):
            self._forged.inc()
        else:
            received = self._rt.metrics.updates_received
            received.labels("webhook", f"rejected_{rejection.status}").inc()
            # Forged requests are not logged one by one: a flood would flood the log too.
            log.info(
                "intake.rejected", bot_id=bot_id, status=rejection.status, reason=rejection.reason
            )
        if not rejection.audited:
            return
        forged = self._rejections.add(
            now=self._rt.clock(),
            bot_id=bot_id,
            workspace_id=workspace_id,
            status=rejection.status,
            reason=rejection.reason,
            remote_addr=_client_host(scope),
            # Only a bot we serve has a secret to rotate.
            forged=isinstance(rejection, Forged) and workspace_id is not None,
        )
        if bot_id is not None and forged:
            self._breaker.count(bot_id, forged, rotated=self._credentials.forget)


def _client_host(scope: Scope) -> str | None:
    """The client's address: the proxy's client when uvicorn trusts it (FORWARDED_ALLOW_IPS)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def _bot_id_of(path: str) -> int:
    tail = path[len("/telegram/") :]
    if not tail.isascii() or not tail.isdigit() or len(tail) > 19 or int(tail) > _MAX_INT64:
        raise Rejection(404, "no such webhook route", audited=False)
    return int(tail)


async def _read_body(receive: Receive, scope: Scope, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise Rejection(400, "invalid content-length")
            if int(value) > limit:
                raise Rejection(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Rejection(400, "client disconnected before sending the body", audited=False)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Rejection(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parse(body: bytes, bot_id: int, rt: Runtime) -> IncomingUpdate:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Rejection(400, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Rejection(400, "body is not a JSON object")
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise Rejection(400, "update_id must be an integer")
    if not 0 <= update_id <= _MAX_INT64:
        raise Rejection(400, "update_id out of range")
    if update_facts.may_hold_huge_numbers(body):
        # Stored, it would fail the worker's inserts on every retry: refuse it now instead.
        where = update_facts.huge_number_at(data)
        if where is not None:
            # The reason stays fixed (audit rows group by it); the field goes to the log.
            log.info("intake.huge_number", bot_id=bot_id, update_id=update_id, at=where[:200])
            raise Rejection(400, HUGE_NUMBER)
    kind = update_facts.classify(data)
    chat_id = update_facts.chat_id_of(data, kind)
    if chat_id is not None and not -_MAX_INT64 <= chat_id <= _MAX_INT64:
        raise Rejection(400, "chat id out of range")
    return IncomingUpdate(
        bot_id=bot_id,
        update_id=update_id,
        kind=kind.value,
        chat_id=chat_id,
        source=UpdateSource.WEBHOOK,
        # Re-encoding would cost time and could alter what Telegram sent: keep the bytes.
        payload=body.decode("utf-8"),
        received_at=rt.clock(),
    )


# The answer to every stored update, built once (uvicorn reads these messages, never changes them).
_STORED_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-length", b"0")],
}
_STORED_BODY: Message = {"type": "http.response.body", "body": b""}


async def _respond_stored(send: Send) -> None:
    await send(_STORED_START)
    await send(_STORED_BODY)


# The answer to every forged push, built once: a flood of them is this path's whole load.
_NOT_AUTHENTICATED_BODY = orjson.dumps({"error": NOT_AUTHENTICATED})
_NOT_AUTHENTICATED_START: Message = {
    "type": "http.response.start",
    "status": 401,
    "headers": [
        (b"content-length", str(len(_NOT_AUTHENTICATED_BODY)).encode()),
        (b"content-type", b"application/json"),
    ],
}
_NOT_AUTHENTICATED_MESSAGE: Message = {
    "type": "http.response.body",
    "body": _NOT_AUTHENTICATED_BODY,
}


async def _respond_not_authenticated(send: Send) -> None:
    await send(_NOT_AUTHENTICATED_START)
    await send(_NOT_AUTHENTICATED_MESSAGE)


async def _respond(send: Send, status: int, reason: str) -> None:
    body = orjson.dumps({"error": reason})
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
