"""Which targets outgoing HTTP may call: the SSRF guard of event deliveries and call steps.

Only globally routable addresses are callable unless the operator allows on-premise targets.
A URL is checked when it is saved (`check_target`) and again on every POST
(`check_url`); at connect time `GuardedResolver` judges every address a name resolves to and
hands aiohttp only checked addresses, so the connection goes to what was checked (pinned) and
TLS still verifies the certificate against the hostname.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import yarl
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from tgrelay import errors

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# Longer URLs are refused: no legitimate webhook needs more, and it bounds what we store.
MAX_URL_LENGTH = 2048


@dataclass(frozen=True, kw_only=True)
class TargetPolicy:
    """Which non-global addresses the operator lets webhooks call (TGRELAY_WEBHOOKS_ALLOW_*).

    Unspecified, "this network", multicast and broadcast addresses are never callable: they
    name no single host (0.0.0.0 even reaches this machine).
    """

    # On-premise targets: loopback, private, shared (CGNAT), link-local and site-local
    # addresses; never the cloud metadata services, never reserved or documentation ranges.
    allow_private: bool = False
    # Exactly these networks are callable, whatever their class (metadata included).
    allowed_networks: tuple[Network, ...] = ()


class TargetRefused(errors.InvalidInput):
    """The webhook target may not be called."""

    def __init__(self, reason: str, *, remedy: str | None = None) -> None:
        said = f"webhook target refused: {reason}"
        super().__init__(f"{said}; {remedy}" if remedy else said)
        self.reason = reason  # why, specific: "127.0.0.1 is a loopback address"
        # The setting that would allow the target, when one should: "set TGRELAY_…"
        self.remedy = remedy


class RefusedAddress(OSError):
    """A name resolved to an address the guard refuses (raised inside aiohttp's connector)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AddressClass(enum.StrEnum):
    """What a non-global address is, as the noun a refusal names."""

    LOOPBACK = "loopback address"
    PRIVATE = "private address"  # RFC 1918, fc00::/7
    SHARED = "shared address"  # 100.64.0.0/10
    LINK_LOCAL = "link-local address"
    SITE_LOCAL = "site-local address"  # fec0::/10, deprecated by RFC 3879
    UNSPECIFIED = "unspecified address"
    THIS_NETWORK = "'this network' address"  # 0.0.0.0/8
    MULTICAST = "multicast address"
    BROADCAST = "broadcast address"
    RESERVED = "reserved address"
    DOCUMENTATION = "documentation address"
    BENCHMARKING = "benchmarking address"
    CLOUD_PLATFORM = "cloud platform address"  # global, but only meaningful inside a cloud
    NON_GLOBAL = "non-global address"  # anything else ipaddress does not call global


# Callable with allow_private=True (unless the address is a metadata service).
_ON_PREMISE = frozenset(
    {
        AddressClass.LOOPBACK,
        AddressClass.PRIVATE,
        AddressClass.SHARED,
        AddressClass.LINK_LOCAL,
        AddressClass.SITE_LOCAL,
    }
)
# Never callable, not even from an allow-listed network.
_NEVER = frozenset(
    {
        AddressClass.UNSPECIFIED,
        AddressClass.THIS_NETWORK,
        AddressClass.MULTICAST,
        AddressClass.BROADCAST,
    }
)

_NOTES = {
    AddressClass.SHARED: "carrier-grade NAT",
    AddressClass.SITE_LOCAL: "deprecated",
}

# Instance metadata and platform services: the classic SSRF prize. Keyed by (version, int)
# so that an IPv6 zone id (fe80::1%eth0) cannot dodge the lookup.
_METADATA = {
    (4, int(IPv4Address("169.254.169.254"))): "cloud metadata",  # AWS, GCP, Azure, OpenStack…
    (4, int(IPv4Address("169.254.170.2"))): "cloud metadata",  # AWS ECS task credentials
    (4, int(IPv4Address("100.100.100.200"))): "cloud metadata",  # Alibaba Cloud
    (6, int(IPv6Address("fd00:ec2::254"))): "cloud metadata",  # AWS IMDS over IPv6
    (4, int(IPv4Address("168.63.129.16"))): "Azure wire server",
}

# First match wins, so narrower networks come before the ones containing them.
_IPV4_CLASSES: tuple[tuple[IPv4Network, AddressClass], ...] = tuple(
    (IPv4Network(network), kind)
    for network, kind in (
        ("0.0.0.0/32", AddressClass.UNSPECIFIED),
        ("0.0.0.0/8", AddressClass.THIS_NETWORK),
        ("10.0.0.0/8", AddressClass.PRIVATE),
        ("100.64.0.0/10", AddressClass.SHARED),
        ("127.0.0.0/8", AddressClass.LOOPBACK),
        ("169.254.0.0/16", AddressClass.LINK_LOCAL),
        ("172.16.0.0/12", AddressClass.PRIVATE),
        ("192.0.0.0/24", AddressClass.RESERVED),  # IETF protocol assignments
        ("192.0.2.0/24", AddressClass.DOCUMENTATION),
        ("192.88.99.0/24", AddressClass.RESERVED),  # 6to4 relay anycast, deprecated
        ("192.168.0.0/16", AddressClass.PRIVATE),
        ("198.18.0.0/15", AddressClass.BENCHMARKING),
        ("198.51.100.0/24", AddressClass.DOCUMENTATION),
        ("203.0.113.0/24", AddressClass.DOCUMENTATION),
        ("224.0.0.0/4", AddressClass.MULTICAST),
        ("255.255.255.255/32", AddressClass.BROADCAST),
        ("240.0.0.0/4", AddressClass.RESERVED),
    )
)
_IPV6_CLASSES: tuple[tuple[IPv6Network, AddressClass], ...] = tuple(
    (IPv6Network(network), kind)
    for network, kind in (
        ("::/128", AddressClass.UNSPECIFIED),
        ("::1/128", AddressClass.LOOPBACK),
        ("64:ff9b:1::/48", AddressClass.RESERVED),  # local-use NAT64 (RFC 8215)
        ("100::/64", AddressClass.RESERVED),  # discard-only
        ("2001:2::/48", AddressClass.BENCHMARKING),
        ("2001:db8::/32", AddressClass.DOCUMENTATION),
        ("2001::/23", AddressClass.RESERVED),  # IETF protocol assignments
        ("3fff::/20", AddressClass.DOCUMENTATION),  # RFC 9637
        ("5f00::/16", AddressClass.RESERVED),  # SRv6 SIDs (RFC 9602)
        ("fc00::/7", AddressClass.PRIVATE),
        ("fe80::/10", AddressClass.LINK_LOCAL),
        ("fec0::/10", AddressClass.SITE_LOCAL),
        ("ff00::/8", AddressClass.MULTICAST),
    )
)
_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
_LOOPBACK_V4 = IPv4Address("127.0.0.1")


@dataclass(frozen=True, kw_only=True)
class _Finding:
    """Why an address is not simply callable."""

    kind: AddressClass
    note: str | None  # said in parentheses: "cloud metadata", "carrier-grade NAT"

    @property
    def metadata(self) -> bool:
        return self.note == "cloud metadata"

    def _suffix(self) -> str:
        return f" ({self.note})" if self.note else ""

    def indefinite(self) -> str:
        """With its article: "a loopback address", "an unspecified address"."""
        article = "an" if self.kind[0] in "aeiou" else "a"
        return f"{article} {self.kind}{self._suffix()}"

    def definite(self, address: Address) -> str:
        """Naming the address: "the link-local address 169.254.169.254 (cloud metadata)"."""
        return f"the {self.kind} {address}{self._suffix()}"


def _classify(address: Address) -> _Finding | None:
    """The address's class if it is not an ordinary global address, else None."""
    note = _METADATA.get((address.version, int(address)))
    table = _IPV4_CLASSES if isinstance(address, IPv4Address) else _IPV6_CLASSES
    for network, kind in table:
        if address in network:
            return _Finding(kind=kind, note=note or _NOTES.get(kind))
    if note is not None:
        return _Finding(kind=AddressClass.CLOUD_PLATFORM, note=note)
    if isinstance(address, IPv6Address) and address not in _GLOBAL_UNICAST:
        return _Finding(kind=AddressClass.RESERVED, note=None)
    if not address.is_global:
        return _Finding(kind=AddressClass.NON_GLOBAL, note=None)
    return None


ALLOW_PRIVATE = "TGRELAY_WEBHOOKS_ALLOW_PRIVATE"
ALLOWED_NETWORKS = "TGRELAY_WEBHOOKS_ALLOWED_NETWORKS"


def _remedy(address: Address, finding: _Finding) -> str | None:
    """Which setting would let the operator call `address`; None where none should be offered.

    Metadata and cloud platform addresses can be listed too, but we never suggest it.
    """
    if finding.kind in _NEVER or finding.kind is AddressClass.CLOUD_PLATFORM or finding.metadata:
        return None
    alone = f"{ALLOWED_NETWORKS}={type(address)(int(address))}/{address.max_prefixlen}"
    if finding.kind in _ON_PREMISE:
        return (
            "to deliver to a receiver on this machine or your network, "
            f"set {ALLOW_PRIVATE}=true, or {alone} for this address alone"
        )
    return f"to deliver to it anyway, set {alone}"


def _veiled_remedy(finding: _Finding) -> str | None:
    """`_remedy` for a target given by name: the settings, without the address it resolved to."""
    if finding.kind in _NEVER or finding.kind is AddressClass.CLOUD_PLATFORM or finding.metadata:
        return None
    listed = f"add the receiver's address or network to {ALLOWED_NETWORKS}"
    if finding.kind in _ON_PREMISE:
        return (
            "to deliver to a receiver on this machine or your network, "
            f"set {ALLOW_PRIVATE}=true, or {listed}"
        )
    return f"to deliver to it anyway, {listed}"


def _listed(address: Address, policy: TargetPolicy) -> bool:
    return any(address in network for network in policy.allowed_networks)


def _refused(address: Address, policy: TargetPolicy) -> _Finding | None:
    """The finding that keeps `address` from being called under `policy`, None if callable."""
    finding = _classify(address)
    if finding is None or finding.kind in _NEVER:
        return finding
    if _listed(address, policy):
        return None
    if policy.allow_private and finding.kind in _ON_PREMISE and not finding.metadata:
        return None
    return finding


def _embedded_ipv4(address: IPv6Address) -> tuple[str, IPv4Address] | None:
    """The IPv4 address an IPv6 address carries, with how it says so in a refusal."""
    if address.ipv4_mapped is not None:
        return "maps to", address.ipv4_mapped
    if address.sixtofour is not None:
        return "is a 6to4 address for", address.sixtofour
    if address.teredo is not None:
        return "is a Teredo address for", address.teredo[1]  # the client behind the NAT
    if address in _NAT64:
        return "is a NAT64 address for", IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are themselves
        return "is an IPv4-compatible address for", IPv4Address(int(address))
    return None


def _show(address: Address) -> str:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why an address may not be called, and which setting would allow it."""

    reason: str  # "127.0.0.1 is a loopback address"
    remedy: str | None  # "… set TGRELAY_WEBHOOKS_ALLOW_PRIVATE=true …"; None if none should
    # The same for a target given by name, never printing the address it resolved to (a
    # tenant must not learn the operator's network layout): "a loopback address".
    veiled_reason: str
    veiled_remedy: str | None


def judge(address: Address, policy: TargetPolicy) -> Refusal | None:
    """Why `address` may not be called under `policy` and what would allow it; None if it may.

    IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo, NAT64, IPv4-compatible) are
    judged by that IPv4 address, unless the IPv6 address itself is in an allowed network.
    """
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            how, inner = embedded
            finding = _refused(inner, policy)
            if finding is None:
                return None
            if finding.kind not in _NEVER and _listed(address, policy):
                return None
            return Refusal(
                reason=f"{_show(address)} {how} {finding.definite(inner)}",
                remedy=_remedy(inner, finding),
                veiled_reason=f"an IPv6 address that {how} {finding.indefinite()}",
                veiled_remedy=_veiled_remedy(finding),
            )
    finding = _refused(address, policy)
    if finding is None:
        return None
    return Refusal(
        reason=f"{_show(address)} is {finding.indefinite()}",
        remedy=_remedy(address, finding),
        veiled_reason=finding.indefinite(),
        veiled_remedy=_veiled_remedy(finding),
    )


def refusal(address: Address, policy: TargetPolicy) -> str | None:
    """Why `address` may not be called under `policy`, or None if it may."""
    found = judge(address, policy)
    return None if found is None else found.reason


# A host name as it reaches us after yarl's IDNA encoding: lower-case labels, maybe a final dot.
_NAME = re.compile(
    r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*\.?"
)
# Hosts that inet_aton() may read as an IPv4 address: 2130706433, 0x7f.1, 0177.0.0.1, 127.1.
_NUMERIC = re.compile(r"[0-9a-fx.]+")


def _ip_literal(host: str) -> tuple[Address, bool] | None:
    """The address a URL host spells, and whether it is spelled canonically; None for a name."""
    if ":" in host:
        try:
            return ipaddress.ip_address(host.replace("%25", "%")), True
        except ValueError:
            return None
    bare = host.removesuffix(".")
    try:
        return IPv4Address(bare), bare == host
    except ValueError:
        pass
    if _NUMERIC.fullmatch(bare):
        try:
            return IPv4Address(socket.inet_aton(bare)), False
        except OSError:
            return None
    return None


def _is_localhost(host: str) -> bool:
    name = host.removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")  # RFC 6761 §6.3


# URLs judged callable, kept per policy: a delivery lane posts to a few endpoints' URLs
# thousands of times a second, and parsing and judging one cost more than signing the body.
# A refused URL raises, so it is judged afresh each time (and its error says why).
_CHECKED_KEPT = 4096


@functools.lru_cache(maxsize=_CHECKED_KEPT)
def check_url(url: str, policy: TargetPolicy) -> str:
    """The URL normalised, if its form allows a call; raises TargetRefused otherwise.

    No DNS: a host that is an IP address in any spelling is judged here, a name is judged
    when it resolves (`resolve_checked`, `GuardedResolver`).
    """
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = yarl.URL(url)
    except ValueError as exc:
        raise TargetRefused(f"URL cannot be parsed: {exc}") from exc
    if not parsed.scheme:
        raise TargetRefused("URL has no scheme: use http or https")
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused(f"scheme {parsed.scheme!r} is not allowed: use http or https")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise TargetRefused("URL has userinfo (user:password@): send credentials in headers")
    host = parsed.raw_host
    if not host:
        raise TargetRefused("URL has no host")
    port = parsed.explicit_port
    if port is not None and not 1 <= port <= 65535:
        raise TargetRefused(f"port {port} is out of range 1-65535")
    literal = _ip_literal(host)
    if literal is not None:
        address, canonical = literal
        if not canonical and isinstance(address, IPv4Address):
            finding = _refused(address, policy)
            if finding is not None:
                raise TargetRefused(f"{host} encodes {finding.definite(address)}")
            raise TargetRefused(f"{host} is an unusual spelling of {address}: write {address}")
        refused = judge(address, policy)
        if refused is not None:
            raise TargetRefused(refused.reason, remedy=refused.remedy)
    elif not _NAME.fullmatch(host):
        raise TargetRefused(f"host {host!r} is not a valid name")
    elif _is_localhost(host) and refusal(_LOOPBACK_V4, policy) is not None:
        raise TargetRefused(
            f"{host} is a loopback name",
            remedy=(
                "to deliver to a receiver on this machine, "
                f"set {ALLOW_PRIVATE}=true, or write 127.0.0.1 and set "
                f"{ALLOWED_NETWORKS}=127.0.0.1/32 for that address alone"
            ),
        )
    return str(parsed)


def _first_refusal(results: list[ResolveResult], policy: TargetPolicy) -> Refusal | None:
    for result in results:
        refused = judge(ipaddress.ip_address(result["host"]), policy)
        if refused is not None:
            return refused
    return None


async def resolve_checked(
    host: str, port: int, policy: TargetPolicy, resolver: AbstractResolver | None = None
) -> list[ResolveResult]:
    """Every address `host` resolves to, if all of them may be called; raises TargetRefused."""
    base = resolver if resolver is not None else DefaultResolver()
    try:
        results = await base.resolve(host, port, family=socket.AF_UNSPEC)
    except OSError as exc:
        raise TargetRefused(f"{host} does not resolve") from exc
    finally:
        if resolver is None:
            await base.close()
    if not results:
        raise TargetRefused(f"{host} does not resolve")
    refused = _first_refusal(results, policy)
    if refused is not None:
        raise TargetRefused(
            f"{host} resolves to {refused.veiled_reason}", remedy=refused.veiled_remedy
        )
    return results


async def check_target(
    url: str, policy: TargetPolicy, resolver: AbstractResolver | None = None
) -> str:
    """The normalised URL if it may be called, its name resolved and judged (endpoint create)."""
    normalised = check_url(url, policy)
    parsed = yarl.URL(normalised)
    host = parsed.raw_host
    assert host is not None  # check_url refuses a URL without one
    assert parsed.port is not None  # http and https have default ports
    if _ip_literal(host) is None:
        await resolve_checked(host, parsed.port, policy, resolver)
    return normalised


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with the guard inside: refuses a name if any address is refused.

    aiohttp connects only to the addresses returned here, and keeps the hostname for TLS
    (SNI and certificate checks: `server_hostname` in TCPConnector._create_direct_connection).
    IP-literal hosts never reach a resolver; `check_url` judges those.
    """

    def __init__(self, policy: TargetPolicy, base: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._base = base

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._base is None:
            self._base = DefaultResolver()  # needs the running loop, so made on first use
        results = await self._base.resolve(host, port, family=family)
        if not results:  # aiohttp would fail an assertion on an empty list
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
        refused = _first_refusal(results, self._policy)
        if refused is not None:
            raise RefusedAddress(f"{host} resolves to {refused.veiled_reason}")
        return results

    async def close(self) -> None:
        if self._base is not None:
            await self._base.close()
