"""Pure rules of the catalogue: validation of products, locations, desks, hours and closures,
and the days the counters close.

Every rule raises `CatalogueRuleError` naming the offending input field with the path a client
sent it under (`weekly.2.1.end` = the end of the second block of Tuesday), so the HTTP layer can
answer with a problem+json 422 whose `errors` point at the exact field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date

import holidays

from loket_contracts.events import DeskDefined, LocationDefined, TimeBlock
from loket_runtime.i18n import tr

WEEKDAYS = ("1", "2", "3", "4", "5", "6", "7")
WEEKDAY_NAMES = {
    "1": tr("Monday"),
    "2": tr("Tuesday"),
    "3": tr("Wednesday"),
    "4": tr("Thursday"),
    "5": tr("Friday"),
    "6": tr("Saturday"),
    "7": tr("Sunday"),
}


class CatalogueRuleError(ValueError):
    """A change the catalogue refuses; `errors` lists (field, message), the first is `field`/`message`.
    Each message is a `Text` (`tr`), given in the admin's language by the API."""

    def __init__(self, field: str, message: str, *, errors: Sequence[tuple[str, str]] | None = None) -> None:
        self.errors: list[tuple[str, str]] = list(errors) if errors else [(field, message)]
        self.field, self.message = self.errors[0]
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.errors))

    @classmethod
    def many(cls, errors: Sequence[tuple[str, str]]) -> CatalogueRuleError:
        return cls(errors[0][0], errors[0][1], errors=errors)


def _raise_if(errors: list[tuple[str, str]]) -> None:
    if errors:
        raise CatalogueRuleError.many(errors)


MIDNIGHT = 24 * 60  # the latest a block may end ("24:00")


def minutes(hhmm: str) -> int:
    """Minutes since local midnight of a wall-clock "HH:MM" ("24:00" = 1440)."""
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)


# --- hours ------------------------------------------------------------------------------------


def validate_weekly_hours(weekly: Mapping[str, Sequence[TimeBlock]], grid_minutes: int | None = None) -> None:
    """Weekdays are "1" (Monday) to "7" (Sunday); each block ends after it starts; the blocks of
    one day do not overlap; with `grid_minutes`, each block starts on the location's slot grid."""
    errors: list[tuple[str, str]] = []
    for day, blocks in weekly.items():
        if day not in WEEKDAYS:
            errors.append((f"weekly.{day}", tr("weekday must be 1 (Monday) to 7 (Sunday)")))
            continue
        valid: list[tuple[int, TimeBlock]] = []
        for i, block in enumerate(blocks):
            if minutes(block.end) <= minutes(block.start):
                errors.append(
                    (
                        f"weekly.{day}.{i}.end",
                        tr(
                            "%(day)s block ends at %(end)s, not after it starts at %(start)s",
                            day=WEEKDAY_NAMES[day],
                            end=block.end,
                            start=block.start,
                        ),
                    )
                )
                continue
            if minutes(block.end) > MIDNIGHT:  # "24:30" matches the contract's pattern, but no day has it
                errors.append(
                    (
                        f"weekly.{day}.{i}.end",
                        tr("%(day)s block ends at %(end)s, after 24:00", day=WEEKDAY_NAMES[day], end=block.end),
                    )
                )
                continue
            if grid_minutes and minutes(block.start) % grid_minutes:
                errors.append(
                    (
                        f"weekly.{day}.{i}.start",
                        tr(
                            "%(start)s is not on the location's %(minutes)s-minute slot grid",
                            start=block.start,
                            minutes=grid_minutes,
                        ),
                    )
                )
            valid.append((i, block))
        ordered = sorted(valid, key=lambda ib: minutes(ib[1].start))
        reach: tuple[int, TimeBlock] | None = None  # the block reaching latest so far
        for i, block in ordered:
            if reach is not None and minutes(block.start) < minutes(reach[1].end):
                i_prev, prev = reach
                errors.append(
                    (
                        f"weekly.{day}.{i}",
                        tr(
                            "%(day)s blocks %(first)s (#%(first_index)s) and %(second)s (#%(second_index)s) overlap",
                            day=WEEKDAY_NAMES[day],
                            first=f"{prev.start}-{prev.end}",
                            first_index=i_prev,
                            second=f"{block.start}-{block.end}",
                            second_index=i,
                        ),
                    )
                )
            if reach is None or minutes(block.end) > minutes(reach[1].end):
                reach = (i, block)
    _raise_if(errors)


def validate_effective_from(effective_from: date, today: date) -> None:
    """New hours apply from today on: publishing hours for a past day would rewrite history."""
    if effective_from < today:
        raise CatalogueRuleError(
            "effective_from", tr("%(day)s is in the past; hours apply from today on", day=effective_from.isoformat())
        )


# --- products, locations, desks ----------------------------------------------------------------


def _check_product_list(products: Sequence[str], known_products: set[str]) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, product in enumerate(products):
        if product not in known_products:
            errors.append((f"products.{i}", tr("unknown product %(product)r", product=product)))
        elif product in seen:
            errors.append((f"products.{i}", tr("product %(product)r is listed twice", product=product)))
        seen.add(product)
    return errors


def validate_location(
    location: LocationDefined,
    known_products: set[str],
    desks: Iterable[DeskDefined] = (),
    schedules: Iterable[tuple[str, Mapping[str, Sequence[TimeBlock]]]] = (),
) -> None:
    """Products exist; no desk of the location serves a product the location stops offering;
    the hours of its desks (`schedules`: (desk id, weekly) still in force or ahead) start on the grid."""
    errors = _check_product_list(location.products, known_products)
    offered = set(location.products)
    for desk in desks:
        dropped = [p for p in desk.products if p not in offered]
        if dropped:
            errors.append(
                (
                    "products",
                    tr(
                        "desk %(desk)r still serves %(products)s; change the desk first",
                        desk=desk.desk_id,
                        products=", ".join(dropped),
                    ),
                )
            )
    grid = location.slot_grid_minutes
    for desk_id, weekly in schedules:
        off_grid = sorted({b.start for blocks in weekly.values() for b in blocks if minutes(b.start) % grid})
        if off_grid:
            errors.append(
                (
                    "slot_grid_minutes",
                    tr(
                        "hours of desk %(desk)r start at %(starts)s, not on a %(minutes)s-minute grid",
                        desk=desk_id,
                        starts=", ".join(off_grid),
                        minutes=grid,
                    ),
                )
            )
    _raise_if(errors)


def validate_desk(
    desk: DeskDefined,
    location: LocationDefined | None,
    known_products: set[str],
    existing: DeskDefined | None = None,
) -> None:
    """The location exists; a desk stays at its location; it serves known products its location offers."""
    if location is None:
        raise CatalogueRuleError("location_id", tr("unknown location %(location)r", location=desk.location_id))
    if existing is not None and existing.location_id != desk.location_id:
        raise CatalogueRuleError(
            "location_id",
            tr(
                "desk %(desk)r is at %(location)r; a desk cannot move: remove it and define a new one",
                desk=desk.desk_id,
                location=existing.location_id,
            ),
        )
    errors = _check_product_list(desk.products, known_products)
    for i, product in enumerate(desk.products):
        if product in known_products and product not in location.products:
            errors.append(
                (
                    f"products.{i}",
                    tr(
                        "location %(location)r does not offer %(product)r",
                        location=location.location_id,
                        product=product,
                    ),
                )
            )
    _raise_if(errors)


# --- closures -------------------------------------------------------------------------------------


def validate_closure_day(day: date, today: date) -> None:
    if day < today:
        raise CatalogueRuleError(
            "day", tr("%(day)s is in the past; only today or a later day can be closed", day=day.isoformat())
        )


def adhoc_closure_id(location_id: str | None, day: date) -> str:
    """One ad-hoc closure per location (or all) and day: declaring it again is idempotent."""
    return f"ad-hoc:{location_id or 'all'}:{day.isoformat()}"


# Local government in Flanders also closes on these days (besides the public holidays).
LOCAL_CLOSING_DAYS = (
    (1, 2, tr("Day after New Year")),
    (7, 11, tr("Flemish Community Day")),
    (11, 2, tr("All Souls' Day")),
    (11, 15, tr("King's Feast")),
    (12, 26, tr("Boxing Day")),
)
# python-holidays lists Easter Sunday and Whit Sunday for Belgium; counters are closed on Sundays anyway.
_SUNDAY_FEASTS = {"Easter Sunday", "Pentecost"}
# The names residents and staff in Belgium know the public holidays by, by python-holidays' name.
# A closing day's name is its closure's `reason`: marked here, so that a refusal that names it
# (booking's "the counter is closed that day") can give it in the resident's language.
_NAMES = {
    "New Year's Day": tr("New Year's Day"),
    "Easter Monday": tr("Easter Monday"),
    "Labor Day": tr("Labour Day"),
    "Ascension Day": tr("Ascension Day"),
    "Pentecost Monday": tr("Whit Monday"),
    "Whit Monday": tr("Whit Monday"),
    "National Day": tr("National Day"),
    "Assumption Day": tr("Assumption Day"),
    "All Saints' Day": tr("All Saints' Day"),
    "Armistice Day": tr("Armistice Day"),
    "Christmas Day": tr("Christmas Day"),
}


def closing_days(year: int) -> list[tuple[date, str, str]]:
    """(day, kind, name) of every day the counters close in `year`: holidays and local closing days."""
    days: dict[date, tuple[str, str]] = {}
    for day, name in holidays.country_holidays("BE", years=year, language="en_US").items():
        if name not in _SUNDAY_FEASTS:
            days[day] = ("holiday", _NAMES.get(name, name))
    for month, dom, name in LOCAL_CLOSING_DAYS:
        days.setdefault(date(year, month, dom), ("local-closing-day", name))
    return sorted((day, kind, name) for day, (kind, name) in days.items())


def closing_day_id(kind: str, day: date) -> str:
    return f"{kind}:{day.isoformat()}"
