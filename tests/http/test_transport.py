"""The HTTP client: every status is a Response, every transport failure a RequestFailed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.responses import Response as StarletteResponse
from starlette.types import Receive, Scope, Send

from tgrelay.http import guard, transport
from tgrelay.testing import receiver, serving
from tgrelay.testing.resolver import StaticResolver

ON_PREMISE = guard.TargetPolicy(allow_private=True)
NOW = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def client() -> AsyncIterator[transport.Client]:
    """A client allowed to call loopback receivers, with a short timeout and a fixed clock."""
    webhooks = transport.Client(ON_PREMISE, timeout_seconds=0.5, now=lambda: NOW)
    yield webhooks
    await webhooks.aclose()


@contextlib.asynccontextmanager
async def raw_server(
    handle: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """A TCP server on a loopback port that speaks whatever `handle` writes; yields the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handle(reader, writer)
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ssl_context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


def _answer(status: int, body: bytes = b"", **headers: str) -> receiver.Responder:
    async def respond(_delivery: receiver.Delivery) -> StarletteResponse:
        return StarletteResponse(content=body, status_code=status, headers=headers)

    return respond


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_timeout_is_a_request_failure(client: transport.Client) -> None:
    """A server that never answers fails the POST after the timeout, not as a refusal."""

    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    async with raw_server(silent) as port:
        with pytest.raises(transport.RequestFailed) as caught:
            await client.post(f"http://127.0.0.1:{port}/", b"{}", {})

    assert (caught.value.reason, caught.value.refused, caught.value.timed_out) == (
        "timeout after 0.5s",
        False,
        True,
    )
    assert 0.5 <= caught.value.duration_seconds < 2


async def test_closed_port_is_connection_refused(client: transport.Client) -> None:
    """Nothing listening at the port fails the POST with "connection refused"."""
    with pytest.raises(transport.RequestFailed) as caught:
        await client.post(f"http://127.0.0.1:{_free_port()}/", b"{}", {})

    assert (caught.value.reason, caught.value.refused) == ("connection refused", False)


async def test_name_that_does_not_resolve_is_a_dns_failure() -> None:
    """A name without an address fails the POST as a DNS failure, which may heal, not a refusal."""
    webhooks = transport.Client(ON_PREMISE, resolver=StaticResolver({}))
    try:
        with pytest.raises(transport.RequestFailed) as caught:
            await webhooks.post("https://nowhere.test/hook", b"{}", {})
    finally:
        await webhooks.aclose()

    assert (caught.value.reason, caught.value.refused) == (
        "DNS: nowhere.test does not resolve",
        False,
    )


async def test_server_closing_without_answer_is_a_request_failure(
    client: transport.Client,
) -> None:
    """A server that reads the request and hangs up fails the POST."""

    async def hang_up(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)

    async with raw_server(hang_up) as port:
        with pytest.raises(transport.RequestFailed) as caught:
            await client.post(f"http://127.0.0.1:{port}/", b"{}", {})

    assert (caught.value.reason, caught.value.refused) == (
        "server closed the connection without a response",
        False,
    )


async def test_garbage_answer_is_a_request_failure(client: transport.Client) -> None:
    """A server that answers something other than HTTP fails the POST as an invalid response."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(garbage) as port:
        with pytest.raises(transport.RequestFailed) as caught:
            await client.post(f"http://127.0.0.1:{port}/", b"{}", {})

    assert caught.value.reason.startswith("invalid HTTP response: ")
    assert caught.value.refused is False


def _self_signed(directory: Path, name: str) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def test_untrusted_certificate_is_a_tls_failure(tmp_path: Path) -> None:
    """An https endpoint with a certificate nobody vouches for fails the POST as a TLS error."""

    async def answer(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()

    webhooks = transport.Client(ON_PREMISE, resolver=StaticResolver({"tls.test": ["127.0.0.1"]}))
    try:
        async with raw_server(answer, _self_signed(tmp_path, "tls.test")) as port:
            with pytest.raises(transport.RequestFailed) as caught:
                await webhooks.post(f"https://tls.test:{port}/", b"{}", {})
    finally:
        await webhooks.aclose()

    assert (caught.value.reason, caught.value.refused) == (
        "TLS error: certificate verify failed: self-signed certificate",
        False,
    )


DATE_A_MINUTE_LATER = "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize(
    ("status", "body", "headers", "prefix", "retry_after", "location"),
    [
        pytest.param(200, b"ok", {}, "ok", None, None, id="200"),
        pytest.param(204, b"", {}, "", None, None, id="204"),
        pytest.param(410, b"gone", {}, "gone", None, None, id="410"),
        pytest.param(500, b"boom", {}, "boom", None, None, id="500"),
        pytest.param(429, b"", {"Retry-After": "120"}, "", 120.0, None, id="429-delta"),
        pytest.param(503, b"", {"Retry-After": DATE_A_MINUTE_LATER}, "", 60.0, None, id="503-date"),
        pytest.param(503, b"", {"Retry-After": "soon"}, "", None, None, id="503-bad-retry-after"),
        pytest.param(
            307, b"", {"Location": "https://b.example/"}, "", None, "https://b.example/", id="307"
        ),
        pytest.param(
            201, b"", {"Location": "/created/1"}, "", None, None, id="201-location-ignored"
        ),
    ],
)
async def test_every_status_is_a_response(
    client: transport.Client,
    status: int,
    body: bytes,
    headers: dict[str, str],
    prefix: str,
    retry_after: float | None,
    location: str | None,
) -> None:
    """Any status, 410 and 500 included, is an answer with its body prefix, Retry-After and Location."""
    async with receiver.receiving(_answer(status, body, **headers)) as running:
        response = await client.post(running.url, b"{}", {})

    assert dataclasses.replace(response, duration_seconds=0.0) == transport.Response(
        status=status,
        duration_seconds=0.0,
        body=body,
        body_end=transport.BodyEnd.COMPLETE,
        retry_after=retry_after,
        location=location,
    )
    assert response.body_prefix == prefix
    assert response.duration_seconds > 0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("120", 120.0, id="delta"),
        pytest.param(" 30 ", 30.0, id="delta-spaces"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("86401", 86400.0, id="delta-capped"),
        pytest.param("9" * 5000, 86400.0, id="delta-huge"),
        pytest.param("-5", None, id="negative"),
        pytest.param("1.5", None, id="fraction"),
        pytest.param("²", None, id="unicode-digit"),
        pytest.param(DATE_A_MINUTE_LATER, 60.0, id="http-date"),
        pytest.param("Wednesday, 21-Oct-15 07:28:00 GMT", 60.0, id="rfc850-date"),
        pytest.param("Wed, 21 Oct 2015 07:00:00 GMT", 0.0, id="date-past"),
        pytest.param("Thu, 22 Oct 2015 07:28:00 GMT", 86400.0, id="date-capped"),
        pytest.param("tomorrow", None, id="word"),
        pytest.param("", None, id="empty"),
    ],
)
def test_retry_after_is_read_as_seconds(value: str | None, seconds: float | None) -> None:
    """Retry-After in delta-seconds or as an HTTP-date becomes seconds from now, capped at a day."""
    assert transport.retry_after_seconds(value, NOW) == seconds


async def test_big_body_is_cut_at_the_prefix(client: transport.Client) -> None:
    """Of a 100 KiB answer only 2 KiB is read, and the client keeps working afterwards."""
    async with receiver.receiving(_answer(200, b"x" * 100_000)) as running:
        first = await client.post(running.url, b"{}", {})
        second = await client.post(running.url, b"{}", {})

    assert [(r.body_prefix, r.body_end) for r in (first, second)] == [
        ("x" * 2048, transport.BodyEnd.CUT)
    ] * 2


async def test_body_of_exactly_the_limit_is_complete(client: transport.Client) -> None:
    """A body of exactly the bytes asked for is read whole, not taken for a longer one."""
    async with receiver.receiving(_answer(200, b"z" * 2048)) as running:
        response = await client.post(running.url, b"{}", {})

    assert (response.body, response.body_end) == (b"z" * 2048, transport.BodyEnd.COMPLETE)


async def test_read_bytes_and_timeout_are_set_per_post(client: transport.Client) -> None:
    """One POST may read more than the client's prefix and wait less than its timeout."""

    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with receiver.receiving(_answer(200, b"x" * 10_000)) as running:
        response = await client.post(running.url, b"{}", {}, read_bytes=8192)
    async with raw_server(silent) as port:
        with pytest.raises(transport.RequestFailed) as caught:
            await client.post(f"http://127.0.0.1:{port}/", b"{}", {}, timeout_seconds=0.1)

    assert (response.body, response.body_end) == (b"x" * 8192, transport.BodyEnd.CUT)
    assert (caught.value.reason, caught.value.timed_out, caught.value.refused) == (
        "timeout after 0.1s",
        True,
        False,
    )


async def test_prefix_cut_inside_a_character_is_replaced(client: transport.Client) -> None:
    """A prefix ending inside a UTF-8 sequence decodes with a replacement character."""
    async with receiver.receiving(_answer(500, "€".encode() * 1000)) as running:
        response = await client.post(running.url, b"{}", {})

    assert response.body_prefix == "€" * 682 + "\ufffd"  # 2048 = 682 x 3 bytes + 2


async def test_endless_body_is_not_read_to_the_end(client: transport.Client) -> None:
    """An answer whose chunked body never ends still returns promptly with its prefix."""

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
            await writer.drain()

    async with raw_server(endless) as port:
        response = await client.post(f"http://127.0.0.1:{port}/", b"{}", {})

    assert (response.status, response.body_prefix) == (200, "y" * 2048)
    assert response.duration_seconds < 0.5


async def test_stalled_body_keeps_the_status(client: transport.Client) -> None:
    """An answer whose body stalls after the status line is still the answer, with what arrived."""

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        await reader.read()

    async with raw_server(stall) as port:
        response = await client.post(f"http://127.0.0.1:{port}/", b"{}", {})

    assert (response.status, response.body, response.body_end) == (
        202,
        b"partial",
        transport.BodyEnd.BROKEN,
    )


class _PeerRecorder:
    """An ASGI app answering 204 that records the client address of each request."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.peers.append(tuple(scope["client"]))
        await StarletteResponse(status_code=204)(scope, receive, send)


async def test_posts_reuse_one_connection(client: transport.Client) -> None:
    """Consecutive POSTs to one endpoint go over one kept-alive connection."""
    app = _PeerRecorder()
    async with serving.serving(app, lifespan="off") as served:
        statuses = [
            (await client.post(f"{served.base_url}/hook", b"{}", {})).status for _ in range(5)
        ]

    assert statuses == [204] * 5
    assert len(set(app.peers)) == 1


async def test_closed_client_cannot_post() -> None:
    """After aclose the client refuses to open a new session."""
    webhooks = transport.Client(ON_PREMISE)
    await webhooks.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await webhooks.post("http://127.0.0.1:9/", b"{}", {})
