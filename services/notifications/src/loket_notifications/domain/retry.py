"""Retry policy: exponential backoff with jitter, capped.

A message waits out an outage of another part (booking, the catalogue, the mail server, the SMS
gateway) for as long as it lasts: those failures are never counted towards giving up. Only faults
of the message itself (it cannot be built, a bug) count, `max_attempts` of them end it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8  # faults (not outages) before a message is given up
    base_seconds: float = 5.0
    max_seconds: float = 600.0

    def delay(self, attempt: int, jitter: float = 1.0) -> timedelta:
        """Wait before attempt `attempt + 1`, after `attempt` failed tries (1-based); never more
        than `max_seconds`, however many tries failed.

        `jitter` in [0.5, 1] spreads retries of many messages (pass random.uniform(0.5, 1))."""
        raw = self.base_seconds * (2 ** min(max(0, attempt - 1), 40))
        return timedelta(seconds=min(self.max_seconds, raw) * jitter)

    def gives_up(self, faults: int) -> bool:
        """After `faults` failures of the message's own (outages of other parts never count)."""
        return faults >= self.max_attempts
