"""Pure rules of the catalogue: validation of hours and desks, and the days the counters close."""

from __future__ import annotations

from datetime import date

import holidays
from loket_contracts.events import DeskDefined, LocationDefined, TimeBlock


class CatalogueRuleError(ValueError):
    """A change the catalogue refuses; `field` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def validate_weekly_hours(weekly: dict[str, list[TimeBlock]]) -> None:
    """Each block ends after it starts; blocks of one day do not overlap."""
    for day, blocks in weekly.items():
        if day not in {"1", "2", "3", "4", "5", "6", "7"}:
            raise CatalogueRuleError(f"weekly.{day}", "weekday must be 1 (Monday) to 7 (Sunday)")
        ordered = sorted(blocks, key=lambda b: _minutes(b.start))
        for i, block in enumerate(ordered):
            if _minutes(block.end) <= _minutes(block.start):
                raise CatalogueRuleError(f"weekly.{day}", f"block {block.start}-{block.end} ends before it starts")
            if i and _minutes(block.start) < _minutes(ordered[i - 1].end):
                previous = ordered[i - 1]
                raise CatalogueRuleError(
                    f"weekly.{day}",
                    f"blocks {previous.start}-{previous.end} and {block.start}-{block.end} overlap",
                )


def validate_desk(desk: DeskDefined, location: LocationDefined | None, known_products: set[str]) -> None:
    if location is None:
        raise CatalogueRuleError("location_id", f"unknown location {desk.location_id!r}")
    for product in desk.products:
        if product not in known_products:
            raise CatalogueRuleError("products", f"unknown product {product!r}")
        if product not in location.products:
            raise CatalogueRuleError("products", f"location {location.location_id!r} does not offer {product!r}")


def validate_location(location: LocationDefined, known_products: set[str]) -> None:
    for product in location.products:
        if product not in known_products:
            raise CatalogueRuleError("products", f"unknown product {product!r}")


# Local government in Flanders also closes on these days (besides the public holidays).
LOCAL_CLOSING_DAYS = ((1, 2, "Day after New Year"), (7, 11, "Flemish Community Day"), (11, 2, "All Souls' Day"),
                      (11, 15, "King's Feast"), (12, 26, "Boxing Day"))
# python-holidays lists Easter Sunday and Whit Sunday for Belgium; counters are closed on Sundays anyway.
_SUNDAY_FEASTS = {"Easter Sunday", "Pentecost"}


def closing_days(year: int) -> list[tuple[date, str, str]]:
    """(day, kind, name) of every day the counters close in `year`: holidays and local closing days."""
    days: dict[date, tuple[str, str]] = {}
    for day, name in holidays.country_holidays("BE", years=year, language="en_US").items():
        if name not in _SUNDAY_FEASTS:
            days[day] = ("holiday", name)
    for month, dom, name in LOCAL_CLOSING_DAYS:
        days.setdefault(date(year, month, dom), ("local-closing-day", name))
    return sorted((day, kind, name) for day, (kind, name) in days.items())
