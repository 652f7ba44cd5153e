"""A circuit breaker per call target, kept in this process's memory, keyed by its origin.

`tgrelay.breaker`'s pure transitions over a dict: after `failure_threshold` consecutive
failures an origin is open for the cool-off, then one call goes as the probe. Event
endpoints keep their breaker in the database because every worker claims their deliveries;
a call step's target is a URL in a flow, and the conversation's durable retry queue decides
whether to call again, so a breaker here only spares a dead app (and our workers) the calls
of one process. Only origins with failures are held: a success forgets the origin.
"""

from __future__ import annotations

from datetime import datetime

import yarl

from tgrelay import breaker

# Ports a URL implies when it names none: https://app.example and :443 are one origin.
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> str:
    """The breaker's key of a URL: "scheme://host:port", the port written even when implied."""
    parsed = yarl.URL(url)
    scheme = parsed.scheme.lower()
    host = (parsed.raw_host or "").lower()
    port = parsed.explicit_port or _DEFAULT_PORTS.get(scheme)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


class Breakers:
    """The breakers of the origins this process calls; the clock is passed to each decision."""

    def __init__(self, policy: breaker.BreakerPolicy = breaker.DEFAULT_POLICY) -> None:
        self.policy = policy
        self._breakers: dict[str, breaker.Breaker] = {}

    def state(self, key: str) -> breaker.Breaker:
        """The origin's breaker (a closed one for an origin without failures)."""
        return self._breakers.get(key, breaker.Breaker())

    def admit(self, key: str, *, now: datetime) -> breaker.Admission:
        """Whether a call to the origin may go now (perhaps as the probe), and its wait if not."""
        admission, admitted = breaker.admit(self.policy, self.state(key), now=now)
        self._keep(key, admitted)
        return admission

    def succeeded(self, key: str) -> None:
        """The origin's app answered: its breaker closes and the origin is forgotten."""
        self._keep(key, breaker.record_success(self.state(key)))

    def failed(self, key: str, *, now: datetime) -> None:
        """The origin's app did not answer usefully: count it, opening at the threshold."""
        self._keep(key, breaker.record_failure(self.policy, self.state(key), now=now))

    def release_probe(self, key: str, *, now: datetime) -> None:
        """The probe ended without an outcome (cancelled, or refused before connecting)."""
        self._keep(key, breaker.release_probe(self.state(key), now=now))

    def _keep(self, key: str, state: breaker.Breaker) -> None:
        if state == breaker.Breaker():
            self._breakers.pop(key, None)
        else:
            self._breakers[key] = state
