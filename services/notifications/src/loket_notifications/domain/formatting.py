"""Dates and times for people: Europe/Brussels wall-clock time, written the way each language does."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time
from babel.numbers import format_currency

BRUSSELS = ZoneInfo("Europe/Brussels")

_AT = {"nl": "om", "en": "at", "fr": "à"}
# Belgian Dutch and French; British English (day before month, 24-hour clock).
LOCALES = {"nl": "nl_BE", "en": "en_GB", "fr": "fr_BE"}


def _locale(language: str) -> str:
    return LOCALES.get(language, language)


def local(instant: datetime) -> datetime:
    return instant.astimezone(BRUSSELS)


def local_date(instant: datetime) -> date:
    return local(instant).date()


def long_date(instant: datetime, language: str) -> str:
    """E.g. "dinsdag 1 december 2026", "Tuesday 1 December 2026", "mardi 1 décembre 2026"."""
    return format_date(local(instant).date(), format="full", locale=_locale(language))


def short_date(instant: datetime, language: str) -> str:
    """E.g. "di 1 dec.", for an SMS."""
    return format_date(local(instant).date(), format="EEE d MMM", locale=_locale(language))


def clock(instant: datetime, language: str) -> str:
    """E.g. "10:30": the 24-hour clock used in Belgium, in every language."""
    return format_time(local(instant).timetz(), format="HH:mm", locale=_locale(language))


def when(instant: datetime, language: str) -> str:
    """E.g. "dinsdag 1 december 2026 om 10:30"."""
    return f"{long_date(instant, language)} {_AT.get(language, 'at')} {clock(instant, language)}"


def when_short(instant: datetime, language: str) -> str:
    return f"{short_date(instant, language)} {clock(instant, language)}"


def money(euros: float, language: str) -> str:
    """An amount in euro as the page writes it in that language (the same locales as `web/js/i18n.js`):
    "€ 8,50" in Dutch, "8,50 €" in French, "€8.50" in English."""
    return format_currency(euros, "EUR", locale=_locale(language))
