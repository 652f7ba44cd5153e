"""TGRELAY_TELEGRAM_SOURCE_NETWORKS: may a webhook request come from this client address?

The client address is the ASGI scope's, which uvicorn rewrites from `X-Forwarded-For` only
when the peer is one of `FORWARDED_ALLOW_IPS` (its proxy headers middleware): a forged
header from anywhere else changes nothing. The networks are parsed once, into integer
ranges; a request costs one address parse and a few integer comparisons.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


class SourceNetworks:
    """An allow-list of networks, judged per client address."""

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        ranges: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for network in networks:
            ranges[network.version].append(
                (int(network.network_address), int(network.broadcast_address))
            )
        self._v4 = tuple(ranges[4])
        self._v6 = tuple(ranges[6])

    def admits(self, host: str | None) -> bool:
        """Whether the address is in one of the networks; an unknown or unparsable one is not."""
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a unix socket's path, or a proxy's garbage
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket shows IPv4 peers this way
        value = int(address)
        ranges = self._v4 if address.version == 4 else self._v6
        return any(first <= value <= last for first, last in ranges)
