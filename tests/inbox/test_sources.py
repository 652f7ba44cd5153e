"""TGRELAY_TELEGRAM_SOURCE_NETWORKS: which client addresses the webhook intake accepts."""

from __future__ import annotations

import ipaddress

import pytest

from tgrelay.inbox.sources import SourceNetworks

TELEGRAM = SourceNetworks(
    ipaddress.ip_network(n) for n in ("149.154.160.0/20", "91.108.4.0/22", "2001:b28:f23d::/48")
)


@pytest.mark.parametrize(
    ("host", "admitted"),
    [
        ("149.154.160.0", True),  # first of the range
        ("149.154.175.255", True),  # last of the range
        ("149.154.176.0", False),  # just past it
        ("91.108.6.12", True),
        ("91.108.8.1", False),
        ("127.0.0.1", False),
        ("::ffff:149.154.167.50", True),  # an IPv4 peer on a dual-stack socket
        ("2001:b28:f23d:f001::a", True),
        ("2001:db8::1", False),
        ("not-an-address", False),  # a unix socket's path, or a proxy's garbage
        (None, False),  # no client address at all
    ],
)
def test_admits(host: str | None, admitted: bool) -> None:
    """Each address is admitted exactly when one of the networks holds it."""
    assert TELEGRAM.admits(host) is admitted
