"""A claimed batch of messages asks for its contacts and writes its outcomes in one call each
(`adapters.batching.Coalescing`), while each message still gets its own answer or its own error."""

from __future__ import annotations

import asyncio

import pytest

from loket_notifications.adapters.batching import Coalescing
from loket_notifications.application.ports import PermanentError, TransientError


class Directory:
    """Answers a batch of booking ids: b-<n> is known, anything else unknown."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def __call__(self, ids: list[str]) -> list[str | BaseException]:
        self.calls.append(ids)
        await asyncio.sleep(0)  # an answer over the network
        if self.fail is not None:
            raise self.fail
        return [f"contact of {i}" if i.startswith("b-") else PermanentError(f"{i} unknown") for i in ids]


async def test_calls_made_together_are_answered_by_one_batch() -> None:
    directory = Directory()
    asked = Coalescing(directory, max_batch=200)
    answers = await asyncio.gather(*(asked(f"b-{n}") for n in range(50)))
    assert answers == [f"contact of b-{n}" for n in range(50)]
    assert len(directory.calls) == 1 and asked.batches == 1


async def test_a_batch_never_exceeds_its_size() -> None:
    directory = Directory()
    asked = Coalescing(directory, max_batch=20)
    await asyncio.gather(*(asked(f"b-{n}") for n in range(50)))
    assert [len(call) for call in directory.calls] == [20, 20, 10]


async def test_calls_after_the_answer_make_a_new_batch() -> None:
    directory = Directory()
    asked = Coalescing(directory)
    assert await asked("b-1") == "contact of b-1"
    assert await asked("b-2") == "contact of b-2"
    assert directory.calls == [["b-1"], ["b-2"]]


async def test_an_unknown_item_fails_alone() -> None:
    asked = Coalescing(Directory())
    results = await asyncio.gather(asked("b-1"), asked("gone"), asked("b-3"), return_exceptions=True)
    assert results[0] == "contact of b-1" and results[2] == "contact of b-3"
    assert isinstance(results[1], PermanentError)


async def test_a_failed_batch_reaches_every_caller() -> None:
    asked = Coalescing(Directory(fail=TransientError("booking service unreachable")))
    results = await asyncio.gather(*(asked(f"b-{n}") for n in range(5)), return_exceptions=True)
    assert all(isinstance(r, TransientError) for r in results)


async def test_a_caller_that_gives_up_leaves_the_others_their_answers() -> None:
    asked = Coalescing(Directory())
    impatient = asyncio.ensure_future(asked("b-1"))
    patient = asyncio.ensure_future(asked("b-2"))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == "contact of b-2"
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_linger_gathers_calls_made_one_after_the_other() -> None:
    """Outcomes arrive one by one (each after its own SMTP reply): a short linger makes them one batch."""
    directory = Directory()
    asked = Coalescing(directory, linger=0.05)

    async def later(n: int) -> str:
        await asyncio.sleep(0.005 * n)
        return await asked(f"b-{n}")

    assert await asyncio.gather(*(later(n) for n in range(5))) == [f"contact of b-{n}" for n in range(5)]
    assert len(directory.calls) == 1
    assert await asked("b-9") == "contact of b-9"  # and the next call is not left waiting
    assert len(directory.calls) == 2


async def test_a_full_batch_goes_at_once_and_the_rest_after_the_linger() -> None:
    directory = Directory()
    asked = Coalescing(directory, max_batch=3, linger=0.05)
    assert len(await asyncio.gather(*(asked(f"b-{n}") for n in range(4)))) == 4
    assert [len(call) for call in directory.calls] == [3, 1]
    assert await asked("b-5") == "contact of b-5"
