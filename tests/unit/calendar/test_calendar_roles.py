"""What a calendar process does is read from LOKET_ROLES; a typo stops it at start-up."""

from __future__ import annotations

import pytest

from loket_calendar.entrypoints.app import CalendarSettings


def test_a_process_does_everything_unless_told_otherwise() -> None:
    assert CalendarSettings().role_set() == {"allocator", "projections"}


def test_roles_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOKET_ROLES", " allocator ")
    assert CalendarSettings().role_set() == {"allocator"}


def test_an_unknown_role_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="allocater"):
        CalendarSettings(roles="allocater,projections").role_set()
