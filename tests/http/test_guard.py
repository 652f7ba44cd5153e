"""The SSRF guard: hostile webhook targets are refused before any connection is made."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import Response as StarletteResponse

from tgrelay import errors, problems
from tgrelay.http import guard, transport
from tgrelay.testing import receiver
from tgrelay.testing.resolver import StaticResolver

DEFAULT = guard.TargetPolicy()
ON_PREMISE = guard.TargetPolicy(allow_private=True)

# Names the tests resolve without DNS, each pointing somewhere a webhook must not go.
HOSTILE_NAMES = {
    "loopback.test": ["127.0.0.1"],
    "loopback6.test": ["::1"],
    "metadata.test": ["169.254.169.254"],
    "private.test": ["10.1.2.3"],
    "ula.test": ["fd00::1"],
    "mapped.test": ["::ffff:127.0.0.1"],
    "unspecified.test": ["0.0.0.0"],
    # A public address next to a loopback one: one refused address refuses the name.
    "mixed.test": ["93.184.215.14", "127.0.0.1"],
}

# (url with {port}, the guard's reason); ids name the trick.
HOSTILE = [
    pytest.param(
        "http://127.0.0.1:{port}/hook", "127.0.0.1 is a loopback address", id="loopback-v4"
    ),
    pytest.param(
        "http://127.8.9.10:{port}/", "127.8.9.10 is a loopback address", id="loopback-v4-8"
    ),
    pytest.param("http://[::1]:{port}/", "::1 is a loopback address", id="loopback-v6"),
    pytest.param("http://10.0.0.1:{port}/", "10.0.0.1 is a private address", id="rfc1918-10"),
    pytest.param("http://172.16.5.4:{port}/", "172.16.5.4 is a private address", id="rfc1918-172"),
    pytest.param(
        "http://192.168.1.1:{port}/", "192.168.1.1 is a private address", id="rfc1918-192"
    ),
    pytest.param("http://[fd00::1]:{port}/", "fd00::1 is a private address", id="ula-fd"),
    pytest.param("http://[fc00::1]:{port}/", "fc00::1 is a private address", id="ula-fc"),
    pytest.param(
        "http://169.254.1.1:{port}/", "169.254.1.1 is a link-local address", id="link-local-v4"
    ),
    pytest.param(
        "http://169.254.169.254:{port}/latest/meta-data/",
        "169.254.169.254 is a link-local address (cloud metadata)",
        id="cloud-metadata",
    ),
    pytest.param(
        "http://[fd00:ec2::254]:{port}/",
        "fd00:ec2::254 is a private address (cloud metadata)",
        id="cloud-metadata-v6",
    ),
    pytest.param("http://[fe80::1]:{port}/", "fe80::1 is a link-local address", id="link-local-v6"),
    pytest.param(
        "http://[fe80::1%25lo]:{port}/",
        "fe80::1%lo is a link-local address",
        id="link-local-v6-zone",
    ),
    pytest.param("http://224.0.0.1:{port}/", "224.0.0.1 is a multicast address", id="multicast-v4"),
    pytest.param("http://[ff02::1]:{port}/", "ff02::1 is a multicast address", id="multicast-v6"),
    pytest.param("http://240.0.0.1:{port}/", "240.0.0.1 is a reserved address", id="reserved-240"),
    pytest.param(
        "http://255.255.255.255:{port}/", "255.255.255.255 is a broadcast address", id="broadcast"
    ),
    pytest.param(
        "http://0.0.0.0:{port}/", "0.0.0.0 is an unspecified address", id="unspecified-v4"
    ),
    pytest.param("http://[::]:{port}/", ":: is an unspecified address", id="unspecified-v6"),
    pytest.param(
        "http://0.1.2.3:{port}/", "0.1.2.3 is a 'this network' address", id="this-network"
    ),
    pytest.param(
        "http://100.64.0.1:{port}/",
        "100.64.0.1 is a shared address (carrier-grade NAT)",
        id="shared-100-64",
    ),
    pytest.param("http://192.0.2.1:{port}/", "192.0.2.1 is a documentation address", id="test-net"),
    pytest.param(
        "http://198.18.0.1:{port}/", "198.18.0.1 is a benchmarking address", id="benchmarking"
    ),
    pytest.param(
        "http://[::ffff:127.0.0.1]:{port}/",
        "::ffff:127.0.0.1 maps to the loopback address 127.0.0.1",
        id="ipv4-mapped-loopback",
    ),
    pytest.param(
        "http://[::ffff:10.0.0.1]:{port}/",
        "::ffff:10.0.0.1 maps to the private address 10.0.0.1",
        id="ipv4-mapped-private",
    ),
    pytest.param(
        "http://[::ffff:169.254.169.254]:{port}/",
        "::ffff:169.254.169.254 maps to the link-local address 169.254.169.254 (cloud metadata)",
        id="ipv4-mapped-metadata",
    ),
    pytest.param(
        "http://[64:ff9b::7f00:1]:{port}/",
        "64:ff9b::7f00:1 is a NAT64 address for the loopback address 127.0.0.1",
        id="nat64",
    ),
    pytest.param(
        "http://[2002:a9fe:a9fe::1]:{port}/",
        "2002:a9fe:a9fe::1 is a 6to4 address for the link-local address 169.254.169.254 (cloud metadata)",
        id="6to4",
    ),
    pytest.param(
        "http://[2001:0:c000:201::f5ff:fffe]:{port}/",
        "2001:0:c000:201::f5ff:fffe is a Teredo address for the private address 10.0.0.1",
        id="teredo",
    ),
    pytest.param(
        "http://[::127.0.0.1]:{port}/",
        "::7f00:1 is an IPv4-compatible address for the loopback address 127.0.0.1",
        id="ipv4-compatible",
    ),
    pytest.param(
        "http://2130706433:{port}/",
        "2130706433 encodes the loopback address 127.0.0.1",
        id="decimal",
    ),
    pytest.param(
        "http://0x7f000001:{port}/", "0x7f000001 encodes the loopback address 127.0.0.1", id="hex"
    ),
    pytest.param(
        "http://0177.0.0.1:{port}/", "0177.0.0.1 encodes the loopback address 127.0.0.1", id="octal"
    ),
    pytest.param(
        "http://017700000001:{port}/",
        "017700000001 encodes the loopback address 127.0.0.1",
        id="octal-whole",
    ),
    pytest.param(
        "http://127.1:{port}/", "127.1 encodes the loopback address 127.0.0.1", id="short"
    ),
    pytest.param(
        "http://0x7f.1:{port}/", "0x7f.1 encodes the loopback address 127.0.0.1", id="hex-short"
    ),
    pytest.param(
        "http://167772161:{port}/",
        "167772161 encodes the private address 10.0.0.1",
        id="decimal-10",
    ),
    pytest.param("http://0:{port}/", "0 encodes the unspecified address 0.0.0.0", id="zero"),
    pytest.param(
        "http://127.0.0.1.:{port}/",
        "127.0.0.1. encodes the loopback address 127.0.0.1",
        id="trailing-dot",
    ),
    pytest.param(
        "http://127。0。0。1:{port}/", "127.0.0.1 is a loopback address", id="ideographic-dots"
    ),
    pytest.param("http://localhost:{port}/", "localhost is a loopback name", id="localhost"),
    pytest.param("http://LOCALHOST.:{port}/", "localhost. is a loopback name", id="localhost-fqdn"),
    pytest.param(
        "http://api.localhost:{port}/", "api.localhost is a loopback name", id="dot-localhost"
    ),
    pytest.param(
        "http://loopback.test:{port}/",
        "loopback.test resolves to a loopback address",
        id="name-to-loopback",
    ),
    pytest.param(
        "http://loopback6.test:{port}/",
        "loopback6.test resolves to a loopback address",
        id="name-to-loopback-v6",
    ),
    pytest.param(
        "http://metadata.test:{port}/",
        "metadata.test resolves to a link-local address (cloud metadata)",
        id="name-to-metadata",
    ),
    pytest.param(
        "http://private.test:{port}/",
        "private.test resolves to a private address",
        id="name-to-private",
    ),
    pytest.param(
        "http://ula.test:{port}/",
        "ula.test resolves to a private address",
        id="name-to-ula",
    ),
    pytest.param(
        "http://mapped.test:{port}/",
        "mapped.test resolves to an IPv6 address that maps to a loopback address",
        id="name-to-mapped",
    ),
    pytest.param(
        "http://unspecified.test:{port}/",
        "unspecified.test resolves to an unspecified address",
        id="name-to-unspecified",
    ),
    pytest.param(
        "http://mixed.test:{port}/",
        "mixed.test resolves to a loopback address",
        id="name-to-public-and-loopback",
    ),
    pytest.param(
        "ftp://127.0.0.1:{port}/", "scheme 'ftp' is not allowed: use http or https", id="ftp"
    ),
    pytest.param(
        "file:///etc/passwd", "scheme 'file' is not allowed: use http or https", id="file"
    ),
    pytest.param(
        "gopher://127.0.0.1:{port}/_",
        "scheme 'gopher' is not allowed: use http or https",
        id="gopher",
    ),
    pytest.param(
        "127.0.0.1:{port}/", "scheme '127.0.0.1' is not allowed: use http or https", id="bare"
    ),
    pytest.param(
        "//127.0.0.1:{port}/", "URL has no scheme: use http or https", id="scheme-relative"
    ),
    pytest.param(
        "http://user:pass@example.com:{port}/",
        "URL has userinfo (user:password@): send credentials in headers",
        id="userinfo",
    ),
    pytest.param(
        "http://example.com@127.0.0.1:{port}/",
        "URL has userinfo (user:password@): send credentials in headers",
        id="userinfo-decoy",
    ),
    pytest.param("http:///hook", "URL has no host", id="no-host"),
    pytest.param("http://example.com:0/", "port 0 is out of range 1-65535", id="port-0"),
    pytest.param(
        "http://%31%32%37.0.0.1:{port}/",
        "host '%31%32%37.0.0.1' is not a valid name",
        id="percent-host",
    ),
    pytest.param(
        "http://example.com:{port}/" + "a" * 2048,
        "URL is longer than 2048 characters",
        id="too-long",
    ),
]


@dataclasses.dataclass
class Canary:
    """A TCP listener on every local address at one port; any connection to it is a leak."""

    port: int
    ipv6: bool  # whether [::]:port is listening too
    connections: list[str]


def _listening_socket(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    return sock


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    """A canary on 0.0.0.0 and [::] (IPv6 when the host has it): loopback, this host's own
    private addresses and 0.0.0.0 all land here."""
    connections: list[str] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(str(writer.get_extra_info("peername")[0]))
        writer.close()

    v4 = _listening_socket(socket.AF_INET, "0.0.0.0", 0)
    port = v4.getsockname()[1]
    servers = [await asyncio.start_server(record, sock=v4)]
    with contextlib.suppress(OSError):
        servers.append(
            await asyncio.start_server(record, sock=_listening_socket(socket.AF_INET6, "::", port))
        )
    try:
        yield Canary(port=port, ipv6=len(servers) == 2, connections=connections)
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[transport.Client]:
    """A webhook client under the default policy, resolving the hostile test names."""
    webhooks = transport.Client(DEFAULT, resolver=StaticResolver(HOSTILE_NAMES))
    yield webhooks
    await webhooks.aclose()


@pytest.mark.parametrize(("url", "reason"), HOSTILE)
async def test_hostile_target_is_refused_without_a_connection(
    canary: Canary, client: transport.Client, url: str, reason: str
) -> None:
    """A POST to a hostile target fails as refused with the guard's reason, and nothing connects."""
    with pytest.raises(transport.RequestFailed) as caught:
        await client.post(url.format(port=canary.port), b'{"type":"ping"}', {})

    assert (caught.value.reason, caught.value.refused) == (f"refused: {reason}", True)
    assert canary.connections == []


@pytest.mark.parametrize(("url", "reason"), HOSTILE)
async def test_endpoint_creation_refuses_hostile_target(url: str, reason: str) -> None:
    """Checking a URL for a new endpoint refuses the hostile target with the same reason, as a 422."""
    with pytest.raises(guard.TargetRefused) as caught:
        await guard.check_target(url.format(port=8080), DEFAULT, StaticResolver(HOSTILE_NAMES))

    assert (caught.value.reason, problems.status_of(caught.value)) == (reason, 422)
    assert isinstance(caught.value, errors.InvalidInput)


async def test_canary_sees_a_connection_the_policy_allows(canary: Canary) -> None:
    """With private targets allowed the same POST reaches the canary, so its silence above means something."""
    webhooks = transport.Client(ON_PREMISE)
    targets = [f"http://127.0.0.1:{canary.port}/"]
    if canary.ipv6:
        targets.append(f"http://[::1]:{canary.port}/")
    try:
        for url in targets:
            with pytest.raises(transport.RequestFailed) as caught:
                await webhooks.post(url, b"{}", {})
            assert (caught.value.reason, caught.value.refused) == (
                "server closed the connection without a response",
                False,
            )
    finally:
        await webhooks.aclose()

    assert canary.connections == ["127.0.0.1", "::1"][: len(targets)]


async def test_redirect_is_returned_not_followed(canary: Canary) -> None:
    """A 302 from an allowed server comes back as the response, and its Location is not visited."""
    location = f"http://127.0.0.1:{canary.port}/"

    async def redirect(_delivery: receiver.Delivery) -> StarletteResponse:
        return StarletteResponse(status_code=302, headers={"Location": location})

    policy = guard.TargetPolicy(allowed_networks=(IPv4Network("127.0.0.2/32"),))
    webhooks = transport.Client(policy)
    try:
        async with receiver.receiving(redirect, host="127.0.0.2") as running:
            response = await webhooks.post(running.url, b"{}", {})
    finally:
        await webhooks.aclose()

    assert dataclasses.replace(response, duration_seconds=0.0) == transport.Response(
        status=302,
        duration_seconds=0.0,
        body=b"",
        body_end=transport.BodyEnd.COMPLETE,
        retry_after=None,
        location=location,
    )
    assert canary.connections == []


async def test_allowed_network_lets_exactly_that_network_through(canary: Canary) -> None:
    """An allow-list of 127.0.0.2/32 reaches a receiver there but still refuses 127.0.0.1."""
    policy = guard.TargetPolicy(allowed_networks=(IPv4Network("127.0.0.2/32"),))
    webhooks = transport.Client(policy)
    try:
        async with receiver.receiving(host="127.0.0.2") as running:
            response = await webhooks.post(running.url, b"{}", {})
            with pytest.raises(transport.RequestFailed) as caught:
                await webhooks.post(f"http://127.0.0.1:{canary.port}/", b"{}", {})
            deliveries = len(running.receiver.deliveries)
    finally:
        await webhooks.aclose()

    assert (response.status, deliveries) == (200, 1)
    assert (caught.value.reason, caught.value.refused) == (
        "refused: 127.0.0.1 is a loopback address",
        True,
    )
    assert canary.connections == []


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("127.0.0.1", id="ipv4"),
        pytest.param(
            "::1",
            id="ipv6",
            marks=pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here"),
        ),
    ],
)
async def test_on_premise_receiver_gets_the_exact_post(host: str) -> None:
    """With allow_private a local receiver gets the POST with exactly our body and headers."""
    body = b'{"type":"message.received","data":{"text":"hi"}}'
    sent = {"Content-Type": "application/json", "webhook-id": "msg_1", "webhook-signature": "v1,x"}
    webhooks = transport.Client(ON_PREMISE)
    try:
        async with receiver.receiving(host=host) as running:
            response = await webhooks.post(running.url, body, sent)
            authority = running.base_url.removeprefix("http://")
            deliveries = running.receiver.deliveries
    finally:
        await webhooks.aclose()

    assert response.status == 200
    assert deliveries == [
        receiver.Delivery(
            method="POST",
            path="/hook",
            headers={
                "host": authority,
                "user-agent": "tgrelay-webhooks/0.1",
                "accept": "*/*",
                "accept-encoding": "identity",
                "content-type": "application/json",
                "content-length": str(len(body)),
                "webhook-id": "msg_1",
                "webhook-signature": "v1,x",
            },
            body=body,
        )
    ]


async def test_name_is_connected_at_its_checked_address() -> None:
    """A name resolved by the guard is connected to at that address and keeps its Host header."""
    names = StaticResolver({"hooks.test": ["127.0.0.1"]})
    webhooks = transport.Client(ON_PREMISE, resolver=names)
    try:
        async with receiver.receiving() as running:
            port = running.base_url.rsplit(":", 1)[1]
            response = await webhooks.post(f"http://hooks.test:{port}/hook", b"{}", {})
            hosts = [delivery.headers["host"] for delivery in running.receiver.deliveries]
    finally:
        await webhooks.aclose()

    assert (response.status, hosts, names.lookups) == (200, [f"hooks.test:{port}"], ["hooks.test"])


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700::1",
        "2a00:1450:4001:81d::200e",
        "::ffff:93.184.215.14",
        "64:ff9b::5db8:d70e",
        "2002:5db8:d70e::1",
    ],
)
def test_public_address_is_allowed(address: str) -> None:
    """A globally routable address, also inside an IPv6 form that carries it, may be called."""
    assert guard.refusal(ip_address(address), DEFAULT) is None


_LOOPBACK_2 = guard.TargetPolicy(allowed_networks=(IPv4Network("127.0.0.2/32"),))


@pytest.mark.parametrize(
    ("address", "policy", "reason"),
    [
        pytest.param("127.0.0.1", ON_PREMISE, None, id="private-loopback"),
        pytest.param("10.0.0.1", ON_PREMISE, None, id="private-rfc1918"),
        pytest.param("fd00::1", ON_PREMISE, None, id="private-ula"),
        pytest.param("100.64.0.1", ON_PREMISE, None, id="private-shared"),
        pytest.param("169.254.1.1", ON_PREMISE, None, id="private-link-local"),
        pytest.param("::ffff:192.168.0.1", ON_PREMISE, None, id="private-mapped"),
        pytest.param(
            "169.254.169.254",
            ON_PREMISE,
            "169.254.169.254 is a link-local address (cloud metadata)",
            id="private-not-metadata",
        ),
        pytest.param(
            "0.0.0.0", ON_PREMISE, "0.0.0.0 is an unspecified address", id="private-not-unspecified"
        ),
        pytest.param(
            "224.0.0.1", ON_PREMISE, "224.0.0.1 is a multicast address", id="private-not-multicast"
        ),
        pytest.param(
            "240.0.0.1", ON_PREMISE, "240.0.0.1 is a reserved address", id="private-not-reserved"
        ),
        pytest.param(
            "192.0.2.1", ON_PREMISE, "192.0.2.1 is a documentation address", id="private-not-docs"
        ),
        pytest.param("127.0.0.2", _LOOPBACK_2, None, id="listed"),
        pytest.param(
            "127.0.0.1", _LOOPBACK_2, "127.0.0.1 is a loopback address", id="listed-neighbour"
        ),
        pytest.param("::ffff:127.0.0.2", _LOOPBACK_2, None, id="listed-mapped"),
        pytest.param(
            "169.254.169.254",
            guard.TargetPolicy(allowed_networks=(IPv4Network("169.254.169.254/32"),)),
            None,
            id="listed-metadata",
        ),
        pytest.param(
            "64:ff9b::a00:1",
            guard.TargetPolicy(allowed_networks=(IPv6Network("64:ff9b::/96"),)),
            None,
            id="listed-nat64-prefix",
        ),
        pytest.param(
            "0.0.0.0",
            guard.TargetPolicy(allowed_networks=(IPv4Network("0.0.0.0/0"),)),
            "0.0.0.0 is an unspecified address",
            id="listed-never-unspecified",
        ),
        pytest.param(
            "ff02::1",
            guard.TargetPolicy(allowed_networks=(IPv6Network("::/0"),)),
            "ff02::1 is a multicast address",
            id="listed-never-multicast",
        ),
    ],
)
def test_policy_decides_non_global_addresses(
    address: str, policy: guard.TargetPolicy, reason: str | None
) -> None:
    """allow_private opens on-premise classes but not metadata or non-hosts; an allow-list opens exactly its networks."""
    assert guard.refusal(ip_address(address), policy) == reason


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_form_is_judged_like_its_address(address: IPv4Address) -> None:
    """::ffff:a.b.c.d is refused exactly when a.b.c.d is, for any IPv4 address."""
    mapped = IPv6Address(f"::ffff:{address}")

    assert (guard.refusal(mapped, DEFAULT) is None) == (guard.refusal(address, DEFAULT) is None)


@given(st.ip_addresses(v=4))
def test_decimal_spelling_is_never_let_through(address: IPv4Address) -> None:
    """An IPv4 address written as one decimal number is refused, naming the address it encodes."""
    with pytest.raises(guard.TargetRefused) as caught:
        guard.check_url(f"http://{int(address)}/", DEFAULT)

    assert str(address) in caught.value.reason


async def test_system_resolver_answer_for_localhost_is_judged() -> None:
    """resolve_checked with the system resolver refuses localhost for the address it resolves to."""
    with pytest.raises(guard.TargetRefused) as caught:
        await guard.resolve_checked("localhost", 80, DEFAULT)

    assert caught.value.reason == "localhost resolves to a loopback address"


async def test_name_that_does_not_resolve_is_refused() -> None:
    """Endpoint creation refuses a name that does not resolve."""
    with pytest.raises(guard.TargetRefused) as caught:
        await guard.check_target("https://nowhere.test/hook", DEFAULT, StaticResolver({}))

    assert caught.value.reason == "nowhere.test does not resolve"


async def test_public_target_is_normalised() -> None:
    """A target resolving to public addresses passes and comes back normalised."""
    names = StaticResolver(
        {"hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]}
    )

    url = await guard.check_target("HTTPS://Hooks.Example.COM:443/in?x=1", DEFAULT, names)

    assert url == "https://hooks.example.com/in?x=1"


def test_unusual_spelling_of_a_public_address_is_refused() -> None:
    """A public address in a non-canonical spelling is refused with the canonical one to write."""
    with pytest.raises(guard.TargetRefused) as caught:
        guard.check_url("http://0x5db8d70e/", DEFAULT)

    assert (
        caught.value.reason
        == "0x5db8d70e is an unusual spelling of 93.184.215.14: write 93.184.215.14"
    )


_ON_PREMISE_REMEDY = (
    "to deliver to a receiver on this machine or your network, set "
    "TGRELAY_WEBHOOKS_ALLOW_PRIVATE=true, or TGRELAY_WEBHOOKS_ALLOWED_NETWORKS={} for this "
    "address alone"
)


@pytest.mark.parametrize(
    ("address", "remedy"),
    [
        pytest.param("127.0.0.1", _ON_PREMISE_REMEDY.format("127.0.0.1/32"), id="loopback"),
        pytest.param("::1", _ON_PREMISE_REMEDY.format("::1/128"), id="loopback-v6"),
        pytest.param("192.168.1.20", _ON_PREMISE_REMEDY.format("192.168.1.20/32"), id="private"),
        pytest.param("100.64.0.1", _ON_PREMISE_REMEDY.format("100.64.0.1/32"), id="shared"),
        pytest.param("fe80::1%eth0", _ON_PREMISE_REMEDY.format("fe80::1/128"), id="zone-dropped"),
        pytest.param(
            "::ffff:10.0.0.1", _ON_PREMISE_REMEDY.format("10.0.0.1/32"), id="mapped-by-its-ipv4"
        ),
        pytest.param(
            "192.0.2.1",
            "to deliver to it anyway, set TGRELAY_WEBHOOKS_ALLOWED_NETWORKS=192.0.2.1/32",
            id="documentation-only-by-list",
        ),
        pytest.param("169.254.169.254", None, id="metadata-never-suggested"),
        pytest.param("168.63.129.16", None, id="cloud-platform-never-suggested"),
        pytest.param("0.0.0.0", None, id="unspecified-cannot-be-allowed"),
        pytest.param("ff02::1", None, id="multicast-cannot-be-allowed"),
    ],
)
def test_refusal_names_the_setting_that_would_allow_the_address(
    address: str, remedy: str | None
) -> None:
    """A refused on-premise address names both TGRELAY_WEBHOOKS_ALLOW_* settings, other listable ones the allow-list only, and metadata or non-host addresses none."""
    refused = guard.judge(ip_address(address), DEFAULT)

    assert refused is not None
    assert refused.remedy == remedy


async def test_refused_name_says_what_it_resolves_to_but_not_the_address() -> None:
    """Endpoint creation for a name resolving to a private address says it is a private address
    and names both settings that would allow it, but never prints the address itself."""
    with pytest.raises(guard.TargetRefused) as caught:
        await guard.check_target("http://private.test/hook", DEFAULT, StaticResolver(HOSTILE_NAMES))

    remedy = (
        "to deliver to a receiver on this machine or your network, set "
        "TGRELAY_WEBHOOKS_ALLOW_PRIVATE=true, or add the receiver's address or network to "
        "TGRELAY_WEBHOOKS_ALLOWED_NETWORKS"
    )
    assert (caught.value.reason, caught.value.remedy, caught.value.message) == (
        "private.test resolves to a private address",
        remedy,
        f"webhook target refused: private.test resolves to a private address; {remedy}",
    )
    assert "10.1.2.3" not in caught.value.message


def test_a_url_allowed_under_one_policy_is_judged_again_under_another() -> None:
    """check_url keeps its verdicts per policy: one that allows private targets lets a
    loopback URL through, and the default policy still refuses the same URL afterwards."""
    url = "http://127.0.0.1:8080/hook"
    assert guard.check_url(url, ON_PREMISE) == url
    assert guard.check_url(url, ON_PREMISE) == url
    with pytest.raises(guard.TargetRefused, match="loopback"):
        guard.check_url(url, DEFAULT)
