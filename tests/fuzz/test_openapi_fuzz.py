"""The fuzz stage: schemathesis against the merged `/api/v1/openapi.json` of the test stack,
anonymously and as admin. No input, however odd, may get a 5xx (issue 15, part 6).

Bounded so `make test` stays short: a fixed seed (the same cases every run), at most
LOKET_FUZZ_EXAMPLES cases per operation and mode, and a budget of LOKET_FUZZ_SECONDS for the
whole stage, shared out evenly over the operations still to go. Every 5xx is collected (method,
path, identity, status, the request as curl) and the test fails listing them all.

The stack is the session's (`live`), shared with the other tests, so the fuzzer must not change
what they rely on: as admin it sends reads in both modes and writes only with invalid data
(negative mode, which must be refused); anonymously it sends everything (writes need a role or
name nothing that exists).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode

from tests.conftest import RunningStack

SEED = 15_06_2026
MAX_EXAMPLES = int(os.environ.get("LOKET_FUZZ_EXAMPLES", "100"))
BUDGET_SECONDS = float(os.environ.get("LOKET_FUZZ_SECONDS", "150"))
READS = ("GET", "HEAD", "OPTIONS")


def plan(schema: Any, admin: dict[str, str]) -> list[tuple[Any, GenerationMode, dict[str, dict[str, str]]]]:
    """(operation, mode, identities) in a fixed order."""
    slices = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            identities: dict[str, dict[str, str]] = {"anonymous": {}}
            if operation.method.upper() in READS or mode is GenerationMode.NEGATIVE:
                identities["admin"] = admin
            slices.append((operation, mode, identities))
    slices.sort(key=lambda s: (s[0].path, s[0].method, s[1].value))
    return slices


@dataclass
class Tally:
    base_url: str
    session: requests.Session = field(default_factory=requests.Session)
    calls: int = 0
    not_sendable: int = 0
    errors: list[str] = field(default_factory=list)
    unsatisfiable: list[str] = field(default_factory=list)  # e.g. no invalid request exists for it

    def fuzz(self, operation: Any, mode: GenerationMode, identities: dict[str, dict[str, str]], until: float) -> None:
        """Up to MAX_EXAMPLES cases of one operation in one mode (the seed fixes them), until `until`."""

        @hypothesis.seed(SEED)
        @hypothesis.settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            if time.monotonic() > until:
                return
            for who, headers in identities.items():
                try:
                    response = case.call(base_url=self.base_url, session=self.session, headers=headers, timeout=15)
                except (requests.RequestException, ValueError, UnicodeError):
                    self.not_sendable += 1  # a request the client library cannot even send
                    continue
                self.calls += 1
                if response.status_code >= 500:
                    self.errors.append(
                        f"{response.status_code} {case.method} {case.path} as {who} ({mode.value}):"
                        f" {case.as_curl_command(headers=headers)}\n  -> {response.text[:300]!r}"
                    )

        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            self.unsatisfiable.append(f"{operation.method.upper()} {operation.path} ({mode.value})")


@pytest.mark.timeout(BUDGET_SECONDS + 120)
def test_no_input_gets_a_server_error(live: RunningStack) -> None:
    schema = schemathesis.openapi.from_url(f"{live.base_url}/api/v1/openapi.json")
    slices = plan(schema, {"Authorization": f"Bearer {live.token('admin')}"})
    assert len(slices) > 20, "the merged document lists every service's operations"
    tally = Tally(live.base_url)
    started = time.monotonic()
    deadline = started + BUDGET_SECONDS
    for index, (operation, mode, identities) in enumerate(slices):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        tally.fuzz(operation, mode, identities, time.monotonic() + remaining / (len(slices) - index))
    print(
        f"fuzz: {tally.calls} calls in {time.monotonic() - started:.0f} s over {len(slices)} operation/mode pairs,"
        f" {tally.not_sendable} not sendable, no cases for {tally.unsatisfiable}"
    )
    assert tally.calls > 200, f"the fuzzer reached the API ({tally.calls} calls)"
    assert not tally.errors, f"{len(tally.errors)} answers were 5xx:\n" + "\n".join(tally.errors[:40])
