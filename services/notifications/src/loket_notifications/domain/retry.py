"""Retry policy: exponential backoff with jitter, a bounded number of attempts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 5.0
    max_seconds: float = 600.0

    def delay(self, attempt: int, jitter: float = 1.0) -> timedelta:
        """Wait before attempt `attempt + 1`, after `attempt` failed tries (1-based).

        `jitter` in [0.5, 1] spreads retries of many messages (pass random.uniform(0.5, 1))."""
        raw = self.base_seconds * (2 ** max(0, attempt - 1))
        return timedelta(seconds=min(self.max_seconds, raw) * jitter)

    def gives_up(self, attempts: int) -> bool:
        return attempts >= self.max_attempts
