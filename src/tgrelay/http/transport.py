"""The one HTTP edge of outgoing events: a POST to a customer's endpoint, guarded and bounded.

Every answer with a status is a `Response`, whatever the status; everything else (timeout,
refused connection, TLS, DNS, a target the guard refuses) is `RequestFailed`. aiohttp's
exceptions stop here.
"""

from __future__ import annotations

import enum
import errno
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver

from tgrelay import clock, errors
from tgrelay.http import guard

USER_AGENT = "tgrelay-webhooks/0.1"
# A Retry-After longer than a day is read as a day: the retry schedule ends there anyway.
MAX_RETRY_AFTER_SECONDS = 86400.0
_DELTA_SECONDS = re.compile(r"[0-9]+")


class BodyEnd(enum.StrEnum):
    """How reading the answer's body ended."""

    COMPLETE = "complete"  # read to its end
    CUT = "cut"  # longer than the bytes asked for: the rest was left unread
    BROKEN = "broken"  # the connection broke or the timeout struck before the body's end


@dataclass(frozen=True, kw_only=True)
class Response:
    """What the endpoint answered (any status: a 500 or a 410 is an answer, not an error)."""

    status: int
    duration_seconds: float  # from the start of the POST to the end of the body read
    body: bytes  # the body's first bytes (2 KiB by default, `read_bytes` of the POST)
    body_end: BodyEnd
    retry_after: float | None  # Retry-After in seconds, capped at a day; None if absent/invalid
    location: str | None  # where a 3xx pointed (never followed)

    @property
    def body_prefix(self) -> str:
        """The body read, decoded with errors="replace" (a cut may fall inside a character)."""
        return self.body.decode("utf-8", errors="replace")


class RequestFailed(errors.TgrelayError):
    """The POST got no answer from the customer's app."""

    def __init__(
        self,
        reason: str,
        *,
        refused: bool = False,
        timed_out: bool = False,
        duration_seconds: float = 0.0,
    ) -> None:
        super().__init__(reason)
        self.reason = reason  # "timeout after 15s", "connection refused", "refused: …"
        # The guard refused the target: no connection was made, and retrying will not help
        # until the URL or the policy changes.
        self.refused = refused
        self.timed_out = timed_out  # the timeout struck before the status line arrived
        self.duration_seconds = duration_seconds


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or HTTP-date), capped at a day."""
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        if len(text) > 9:  # more than 31 years; also keeps int() away from huge digit strings
            return MAX_RETRY_AFTER_SECONDS
        return min(float(int(text)), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" zones parse naive; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_SECONDS)


def _connector_reason(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        detail = getattr(cert_error, "verify_message", None) or str(cert_error)
        return f"TLS error: certificate verify failed: {detail}"
    if isinstance(exc, aiohttp.ClientSSLError):
        detail = os_error.reason if isinstance(os_error, ssl.SSLError) else None
        return f"TLS error: {detail or os_error}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS: {exc.host} does not resolve"
    if os_error.errno == errno.ECONNREFUSED:
        return "connection refused"
    if os_error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"unreachable: {os_error.strerror}"
    return f"connection failed: {os_error.strerror or os_error}"


def _failure(exc: aiohttp.ClientError, duration: float) -> RequestFailed:
    """Our error for an aiohttp failure before an answer arrived."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, guard.RefusedAddress):
            return RequestFailed(
                f"refused: {exc.os_error.reason}", refused=True, duration_seconds=duration
            )
        return RequestFailed(_connector_reason(exc), duration_seconds=duration)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        reason = "server closed the connection without a response"
    elif isinstance(exc, aiohttp.ClientResponseError):
        reason = f"invalid HTTP response: {exc.message}"
    elif isinstance(exc, aiohttp.InvalidURL):  # check_url lets nothing through that does this
        return RequestFailed(f"refused: invalid URL {exc}", refused=True, duration_seconds=duration)
    elif isinstance(exc, aiohttp.ClientOSError):
        reason = f"connection lost: {exc.strerror or exc}"
    else:
        reason = f"HTTP client error: {type(exc).__name__}: {exc}"
    return RequestFailed(reason, duration_seconds=duration)


class Client:
    """POSTs to customers' apps over one keep-alive connection pool; never follows redirects.

    Names are resolved by `resolver` (aiohttp's default when None) through the guard, so only
    checked addresses are connected to. Open it in the app's lifespan, close with `aclose`.
    """

    def __init__(
        self,
        policy: guard.TargetPolicy,
        *,
        timeout_seconds: float = 15.0,
        resolver: AbstractResolver | None = None,
        max_connections: int = 100,
        max_connections_per_host: int = 0,  # 0: no limit beyond max_connections
        response_prefix_bytes: int = 2048,
        now: clock.Clock = clock.utcnow,
    ) -> None:
        self._policy = policy
        self._timeout_seconds = timeout_seconds
        self._resolver = guard.GuardedResolver(policy, resolver)
        self._max_connections = max_connections
        self._max_connections_per_host = max_connections_per_host
        self._prefix_bytes = response_prefix_bytes
        self._now = now
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        """The session, made on first use because aiohttp needs the running loop."""
        if self._closed:
            raise RuntimeError("the Client is closed")
        connector = aiohttp.TCPConnector(
            resolver=self._resolver,
            limit=self._max_connections,
            limit_per_host=self._max_connections_per_host,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout_seconds),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            auto_decompress=False,  # we read a prefix only; no inflating bombs
            cookie_jar=aiohttp.DummyCookieJar(),  # one endpoint's cookies never reach another
            trust_env=False,  # an HTTP(S)_PROXY would connect where the guard never looked
        )
        return self._session

    @property
    def policy(self) -> guard.TargetPolicy:
        """The targets this client may call."""
        return self._policy

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout_seconds: float | None = None,
        read_bytes: int | None = None,
    ) -> Response:
        """POST `body` to `url`: the answer, whatever its status; RequestFailed without one.

        `timeout_seconds` and `read_bytes` replace the client's defaults for this POST.
        """
        started = time.perf_counter()
        timeout = self._timeout_seconds if timeout_seconds is None else timeout_seconds
        limit = self._prefix_bytes if read_bytes is None else read_bytes
        try:
            target = guard.check_url(url, self._policy)
        except guard.TargetRefused as exc:
            raise RequestFailed(f"refused: {exc.reason}", refused=True) from exc
        session = self._session or self._open()
        try:
            async with session.post(
                target,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as answer:
                read, body_end = await _read_body(answer, limit)
                status = answer.status
                answer_headers = answer.headers
        except TimeoutError as exc:
            raise RequestFailed(
                f"timeout after {timeout:g}s",
                timed_out=True,
                duration_seconds=time.perf_counter() - started,
            ) from exc
        except aiohttp.ClientError as exc:
            raise _failure(exc, time.perf_counter() - started) from exc
        location = answer_headers.get("Location") if 300 <= status < 400 else None
        return Response(
            status=status,
            duration_seconds=time.perf_counter() - started,
            body=read,
            body_end=body_end,
            retry_after=retry_after_seconds(answer_headers.get("Retry-After"), self._now()),
            location=location[: guard.MAX_URL_LENGTH] if location is not None else None,
        )

    async def aclose(self) -> None:
        """Close the pooled connections; the client cannot be used afterwards."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._resolver.close()


async def _read_body(answer: aiohttp.ClientResponse, limit: int) -> tuple[bytes, BodyEnd]:
    """At most `limit` bytes of the body, and how the reading ended.

    One byte more than the limit is asked for, to tell a body of exactly `limit` bytes from a
    longer one. The rest stays unread and the connection is then closed instead of reused
    (aiohttp never pools a connection with an unread body).
    """
    read = bytearray()
    try:
        while len(read) <= limit:
            chunk = await answer.content.read(limit + 1 - len(read))
            if not chunk:
                return bytes(read), BodyEnd.COMPLETE
            read += chunk
    except (aiohttp.ClientError, TimeoutError):
        # The status arrived; a body that breaks or stalls keeps what was read.
        return bytes(read[:limit]), BodyEnd.BROKEN
    return bytes(read[:limit]), BodyEnd.CUT
