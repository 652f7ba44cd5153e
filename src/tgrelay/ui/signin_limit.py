"""Failed sign-ins per client address: after too many in a window, sign-in answers 429.

In-process: each process counts its own failures (a cluster of N API processes allows N
times as many). The count is not reset by a success, so one valid key does not reopen
guessing for an address.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

# Addresses remembered at most; beyond it, those without a failure in the window go.
MAX_ADDRESSES = 10_000


@dataclass(frozen=True, kw_only=True)
class Policy:
    failures: int = 10  # failed sign-ins allowed per address within the window
    window: timedelta = timedelta(minutes=10)


class SignInLimiter:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._failures: dict[str, deque[datetime]] = {}

    def retry_after(self, address: str, now: datetime) -> float | None:
        """Seconds until `address` may try again, or None when it may try now."""
        recent = self._recent(address, now)
        if len(recent) < self.policy.failures:
            return None
        return max((recent[0] + self.policy.window - now).total_seconds(), 1.0)

    def failed(self, address: str, now: datetime) -> None:
        if len(self._failures) >= MAX_ADDRESSES:
            for other in list(self._failures):
                self._recent(other, now)
        self._failures.setdefault(address, deque()).append(now)

    def _recent(self, address: str, now: datetime) -> deque[datetime]:
        found = self._failures.get(address, deque())
        while found and found[0] <= now - self.policy.window:
            found.popleft()
        if not found:
            self._failures.pop(address, None)
        return found
