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
