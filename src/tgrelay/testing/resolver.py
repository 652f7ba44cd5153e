"""A resolver that answers from a table: tests point names at any address without DNS.

Pass it where aiohttp takes a resolver (`transport.Client(resolver=…)`, `guard.check_target`);
like a hosts file for one test, and nothing is asked of the network.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence

from aiohttp.abc import AbstractResolver, ResolveResult


class StaticResolver(AbstractResolver):
    """Resolves the names of `table` to their addresses; any other name does not resolve."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self._table = {
            name.lower().removesuffix("."): tuple(addrs) for name, addrs in table.items()
        }
        self.lookups: list[str] = []  # every name asked for, in order

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        results: list[ResolveResult] = []
        for address in self._table.get(host.lower().removesuffix("."), ()):
            found = (
                socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
            )
            if family in (socket.AF_UNSPEC, found):
                results.append(
                    ResolveResult(
                        hostname=host,
                        host=address,
                        port=port,
                        family=found,
                        proto=0,
                        flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                    )
                )
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return results

    async def close(self) -> None:
        pass
