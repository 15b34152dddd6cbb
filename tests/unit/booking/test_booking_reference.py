"""The booking reference: short, readable aloud, and always the same for one booking."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from loket_booking.domain.reference import CROCKFORD, reference_of


@given(st.uuids())
def test_a_reference_is_eight_unambiguous_characters(booking_id: uuid.UUID) -> None:
    reference = reference_of(str(booking_id))
    assert len(reference) == 8
    assert set(reference) <= set(CROCKFORD)
    assert not set(reference) & set("ILOU"), "no letter that reads as a digit or another letter"


@given(st.uuids())
def test_a_booking_keeps_its_reference(booking_id: uuid.UUID) -> None:
    assert reference_of(str(booking_id)) == reference_of(str(booking_id))


def test_bookings_get_different_references() -> None:
    references = {reference_of(str(uuid.uuid4())) for _ in range(5000)}
    assert len(references) == 5000


def test_a_reference_is_read_from_the_booking_id_as_written_down_here() -> None:
    # Pinned: a resident quotes it on the phone months later; it must not change with a release.
    assert reference_of("01a228f8-5a06-7242-a922-096396cb313a") == "YCCXXQR6"


def test_every_character_of_the_alphabet_is_used() -> None:
    seen = set("".join(reference_of(str(uuid.UUID(int=n))) for n in range(2000)))
    assert seen == set(CROCKFORD)
