"""The token issuer's backoff of failed sign-ins (loket_stack.issuer.LoginBackoff), on a clock the
test moves: per account and client, per account from anywhere, forgotten after a quiet while."""

from __future__ import annotations

from loket_stack.issuer import LoginBackoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backoff(clock: Clock, **kwargs: int) -> LoginBackoff:
    return LoginBackoff(free_per_pair=3, free_per_account=20, max_delay=900, forget_after=900, clock=clock, **kwargs)


def test_a_client_guessing_one_account_waits_1_2_4_seconds_after_three_free_failures() -> None:
    clock = Clock()
    guard = backoff(clock)
    waits = []
    for _ in range(6):
        assert guard.retry_after("ops", "203.0.113.9") == 0
        guard.failed("ops", "203.0.113.9")
        waits.append(guard.retry_after("ops", "203.0.113.9"))
        clock.now += waits[-1]
    assert waits == [0, 0, 0, 1, 2, 4]


def test_the_owner_elsewhere_is_not_held_up_by_one_clients_guessing() -> None:
    clock = Clock()
    guard = backoff(clock)
    for _ in range(6):
        guard.failed("ops", "203.0.113.9")
    assert guard.retry_after("ops", "203.0.113.9") > 0
    assert guard.retry_after("ops", "198.51.100.7") == 0


def test_guessing_one_account_from_many_addresses_backs_the_account_off() -> None:
    clock = Clock()
    guard = backoff(clock)
    for n in range(21):
        guard.failed("ops", f"10.0.0.{n}")
    assert guard.retry_after("ops", "198.51.100.7") == 1
    assert guard.retry_after("staff", "198.51.100.7") == 0


def test_a_success_clears_its_pair_and_a_quiet_while_forgets_the_rest() -> None:
    clock = Clock()
    guard = backoff(clock)
    for _ in range(4):
        guard.failed("ops", "203.0.113.9")
    guard.succeeded("ops", "203.0.113.9")
    assert guard.retry_after("ops", "203.0.113.9") == 0
    for _ in range(4):
        guard.failed("ops", "203.0.113.9")
    clock.now += 901
    guard.failed("ops", "203.0.113.9")  # the first failure of a new while: free again
    assert guard.retry_after("ops", "203.0.113.9") == 0


def test_a_flood_of_names_keeps_memory_bounded() -> None:
    guard = backoff(Clock(), max_keys=100)
    for n in range(1000):
        guard.failed(f"name-{n}", "203.0.113.9")
    assert len(guard) <= 100
