"""Waking the requests that wait for a decision: many keys in few NOTIFY payloads, and back."""

from __future__ import annotations

import asyncio
import uuid

from loket_runtime.notify import NOTIFY_PAYLOAD_BYTES, Waiters, notify_payloads


def test_keys_share_payloads_up_to_the_limit_and_none_is_lost_or_split() -> None:
    keys = [str(uuid.uuid4()) for _ in range(1000)]
    payloads = notify_payloads(keys)
    assert all(len(p.encode()) <= NOTIFY_PAYLOAD_BYTES for p in payloads)
    assert len(payloads) == 5  # 36 characters and a comma each: 213 keys fit in one payload
    assert [k for p in payloads for k in p.split(",")] == keys


def test_no_keys_no_payload_and_one_key_as_it_is() -> None:
    assert notify_payloads([]) == []
    assert notify_payloads(["b-1"]) == ["b-1"]


def test_a_payload_of_several_keys_wakes_each_waiter_and_no_other() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        waiters = Waiters("postgresql://unused", "channel")
        first, second, other = waiters.register("b-1"), waiters.register("b-2"), waiters.register("b-3")
        for payload in notify_payloads(["b-1", "b-2"]):
            waiters._on_notify(None, 0, "channel", payload)
        return first.done(), second.done(), other.done()

    assert asyncio.run(scenario()) == (True, True, False)


def test_a_waiter_counts_as_awaiting_only_with_the_margin_left() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        waiters = Waiters("postgresql://unused", "channel")
        now = asyncio.get_running_loop().time()
        waiters.register("b-1", until=now + 5)
        waiters.register("b-2", until=now + 0.5)
        return waiters.awaits("b-1", margin=1.0), waiters.awaits("b-2", margin=1.0), waiters.awaits("b-3", margin=1.0)

    assert asyncio.run(scenario()) == (True, False, False)


def test_a_decision_delivered_in_process_reaches_the_waiter_with_the_value() -> None:
    async def scenario() -> object:
        waiters = Waiters("postgresql://unused", "channel")
        future = waiters.register("b-1")
        waiters.deliver("b-1", {"status": "confirmed"})
        return await future

    assert asyncio.run(scenario()) == {"status": "confirmed"}
