"""The faults of a chaos run, one function each, and the check shared by all of them: once the fault
is over (the supervisor has the process back, the record is in, the outage ended), a new booking is
decided, and every consumer group applies what the fault left behind within CONVERGE_WITHIN seconds.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field

import httpx
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from loket_contracts.topics import ALL_TOPICS
from tests.integration.test_faults_on_the_stack import PRODUCER_LIMIT, ce_headers, produce
from tools.chaos import checks
from tools.chaos.load import Load
from tools.chaos.stack import DOUBLED, ChaosStack

CONVERGE_WITHIN = 30.0  # seconds, after each fault (issue 15)
DECIDE_WITHIN = 5.0  # seconds from a record of 1 MiB to the next decision (issue 15)
KILLED = ("booking", "calendar", "calendar-allocator", "notifications", "catalogue", "kafka", "postgres")
BURST = 20  # requests at once just before a doubled process is killed: it dies mid-burst
OUTAGE_SIMULATED_SECONDS = 30 * 60
SETTLE_SECONDS = 3.0  # steady load between two faults


@dataclass
class Outcome:
    """One fault's row of the table."""

    fault: str
    back_s: float | None = None  # the supervisor had it running and ready again
    decided_s: float | None = None  # a new booking decided, counted from the end of the fault
    decide_within: float | None = None  # the bound on decided_s, where the issue sets one
    converged_s: float | None = None  # every group applied the records there were when the fault ended
    lag_zero_s: float | None = None  # the first moment no group had a record left to apply
    accepted_during: int = 0  # bookings accepted from the fault's start to its convergence
    detail: str = ""
    notes: list[str] = field(default_factory=list)  # what broke a promise

    @property
    def ok(self) -> bool:
        return not self.notes


@dataclass
class Chaos:
    stack: ChaosStack
    load: Load
    ops: httpx.Client
    outcomes: list[Outcome] = field(default_factory=list)

    def say(self, line: str) -> None:
        print(f"[chaos {time.strftime('%H:%M:%S')}] {line}", flush=True)

    def after_fault(self, outcome: Outcome, fault_ended: float, fault_began: float) -> None:
        """The check after every fault: a new booking is decided, and every consumer group has
        applied what the fault left behind within CONVERGE_WITHIN seconds (and when lag 0 was
        seen); and how many bookings were accepted meanwhile."""
        decided = self.load.time_to_decision()
        if decided is None:
            outcome.notes.append("no booking decided within a minute")
        else:
            outcome.decided_s = time.monotonic() - fault_ended
            if outcome.decide_within is not None and outcome.decided_s > outcome.decide_within:
                outcome.notes.append(f"first decision after {outcome.decided_s:.1f} s")
        caught_up = checks.converge(self.ops, fault_ended, CONVERGE_WITHIN)
        outcome.converged_s, outcome.lag_zero_s = caught_up.backlog_applied_s, caught_up.lag_zero_s
        if outcome.converged_s is None or outcome.converged_s > CONVERGE_WITHIN:
            outcome.notes.append(
                f"backlog not applied within {CONVERGE_WITHIN:.0f} s (left then: {caught_up.behind_at_bound})"
            )
        outcome.accepted_during = self.load.accepted_since(fault_began)
        self.outcomes.append(outcome)
        said = [f"back after {_s(outcome.back_s)}"] if outcome.back_s is not None else []
        said += [f"decided after {_s(outcome.decided_s)}", f"backlog applied after {_s(outcome.converged_s)}"]
        said += [f"lag 0 after {_s(outcome.lag_zero_s)}"]
        said += [f"{outcome.accepted_during} accepted meanwhile", *filter(None, [outcome.detail])]
        said += [f"VIOLATED: {note}" for note in outcome.notes]
        self.say(f"{outcome.fault}: {', '.join(said)}")
        time.sleep(SETTLE_SECONDS)


def kill_process(chaos: Chaos, name: str) -> None:
    """`kill -9` mid-load (mid-burst for a doubled process: its twin carries on); the supervisor
    brings it back. PostgreSQL and Kafka are killed the same way (the postmaster, the broker)."""
    outcome = Outcome(f"kill -9 {name}" + (" (1 of 2)" if name in DOUBLED else ""))
    began = time.monotonic()
    if name in DOUBLED:
        chaos.load.burst(BURST)
        time.sleep(0.3)
    pid = chaos.stack.kill(name)
    outcome.back_s = chaos.stack.wait_back(name, pid)
    chaos.after_fault(outcome, time.monotonic(), began)


def record_of_a_mebibyte(chaos: Chaos, topic: str) -> None:
    """A record the producer just takes (about 1 MiB, not an event of ours) on `topic`: every consumer
    dead-letters it (a copy cut to fit) and moves on; decisions go on within DECIDE_WITHIN seconds."""
    outcome = Outcome(f"1 MiB record on {topic}", decide_within=DECIDE_WITHIN)
    event_id = str(uuid.uuid4())
    key = "chaos-huge"
    headers = ce_headers(event_id, "chaos-huge-record", key)
    overhead = DefaultRecordBatchBuilder.estimate_size_in_bytes(key.encode(), b'{"pad":""}', headers)
    value = json.dumps({"pad": "h" * (PRODUCER_LIMIT - 150 - overhead)}, separators=(",", ":")).encode()
    began = time.monotonic()
    produce(chaos.stack.live, topic, key, headers, value)
    chaos.after_fault(outcome, began, began)


def long_booking_outage(chaos: Chaos, seconds: float) -> None:
    """Booking (both instances) down for `seconds`, standing for OUTAGE_SIMULATED_SECONDS: the
    notifications retry policy runs that many times faster in this stack (ChaosStack), so its
    messages come out of the outage as they would from the real one (attempts made, next try).

    Notifications is held first for a moment, so confirmations are waiting to be sent when booking
    goes; then it works through them while booking is down (it asks booking for the contact), and
    every one of them must go out once booking is back."""
    outcome = Outcome(f"booking down {OUTAGE_SIMULATED_SECONDS // 60} min (simulated in {seconds:.0f} s)")
    began = time.monotonic()
    chaos.stack.hold("notifications")
    time.sleep(15)
    instances = ["booking", chaos.stack.second("booking")]
    for name in instances:
        chaos.stack.hold(name)
    chaos.stack.release("notifications")
    time.sleep(seconds)
    released = time.monotonic()
    for name in instances:
        chaos.stack.release(name)
    for name in instances:
        chaos.stack.wait_back(name, old_pid=0)
    back = time.monotonic()
    outcome.back_s = back - released
    waiting = checks.messages_waiting(chaos.stack.live)
    sent_after = checks.messages_sent_after(chaos.stack.live, waiting, back, timeout=120)
    outcome.detail = f"{len(waiting)} messages waiting when booking was back, all sent {_s(sent_after)} later"
    if sent_after is None:
        left = waiting & checks.messages_waiting(chaos.stack.live)
        outcome.notes.append(f"{len(left)} of them still unsent after 120 s")
    chaos.after_fault(outcome, back, began)


# Every fault of a run by name, in the order a run causes them: each process killed, then a record
# of 1 MiB on each topic (`huge-records`), then the long outage of booking (`booking-outage`).
ALL = (*KILLED, "huge-records", "booking-outage")


def cause(chaos: Chaos, name: str, outage_seconds: float) -> None:
    """Cause the fault called `name` (one of ALL) and check after it."""
    if name in KILLED:
        kill_process(chaos, name)
    elif name == "huge-records":
        for topic in ALL_TOPICS:
            record_of_a_mebibyte(chaos, topic.name)
    elif name == "booking-outage":
        long_booking_outage(chaos, outage_seconds)


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s"
