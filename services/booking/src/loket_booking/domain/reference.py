"""The short booking reference a resident reads out on the phone or at the counter.

Eight characters of Crockford base32 (no I, L, O or U, so nothing is misread), derived from the
booking id alone: the same booking always has the same reference, and nothing needs storing.
"""

from __future__ import annotations

import hashlib

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 8  # 40 bits: a collision is unlikely among the bookings of one location and day


def reference_of(booking_id: str) -> str:
    """The reference of a booking: eight characters such as `7K3MQX9D`."""
    number = int.from_bytes(hashlib.sha256(booking_id.encode()).digest()[:5], "big")
    return "".join(CROCKFORD[(number >> shift) & 31] for shift in range(5 * (LENGTH - 1), -1, -5))
