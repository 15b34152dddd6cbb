"""The kinds of message the service sends, and the channel each goes over."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Channel = Literal["email", "sms"]
LANGUAGES = ("nl", "en", "fr")


class Kind(StrEnum):
    PLEASE_CONFIRM = "please-confirm"
    CONFIRMATION = "confirmation"
    REJECTION = "rejection"
    CANCELLATION = "cancellation"
    CANCELLATION_SMS = "cancellation-sms"
    RESCHEDULED = "rescheduled"
    EXPIRED = "expired"
    REMINDER = "reminder"
    REMINDER_SMS = "reminder-sms"
    WAITLIST = "waitlist-slot"


CHANNEL: dict[Kind, Channel] = {kind: "sms" if kind.value.endswith("-sms") else "email" for kind in Kind}

REMINDER_KINDS = (Kind.REMINDER, Kind.REMINDER_SMS)

# Kinds about an upcoming appointment: they carry the "don't come too early" rule and the documents.
UPCOMING = frozenset({Kind.PLEASE_CONFIRM, Kind.CONFIRMATION, Kind.RESCHEDULED, Kind.REMINDER, Kind.REMINDER_SMS})

# Kinds whose e-mail may carry the booking's calendar object (loket_runtime.ical): an invitation or its
# update (METHOD:REQUEST), or a CANCEL when it ended; planning decides which one each message carries.
WITH_ICS = frozenset({Kind.CONFIRMATION, Kind.RESCHEDULED, Kind.CANCELLATION, Kind.EXPIRED})


def channel_of(kind: Kind | str) -> Channel:
    return CHANNEL[Kind(kind)]
