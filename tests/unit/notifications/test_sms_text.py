"""SMS text, pinned at the 160-septet edge: what a cut keeps (the start of the text, whole, with
"..." in the last three septets), what the GSM-7 extension characters cost, and which optional
parts (the manage link) still fit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loket_notifications.domain import sms

GSM7_TEXT = st.text(alphabet=sorted(sms.GSM7_BASIC | sms.GSM7_EXTENSION), max_size=400)


# --- counting septets -------------------------------------------------------------------------


def test_basic_characters_cost_one_septet_and_extension_characters_two() -> None:
    assert sms.septets("") == 0
    assert sms.septets("Gent 09:30 é") == 12
    assert sms.septets("€") == 2  # escape + the character
    assert sms.septets("a{b}c") == 7
    assert sms.is_gsm7("Déjà vu [€5]")
    assert not sms.is_gsm7("ê") and not sms.is_gsm7("ok ç")  # one character outside makes it UCS-2


def test_a_character_outside_gsm7_cannot_be_counted() -> None:
    with pytest.raises(ValueError, match="GSM-7"):
        sms.septets("Łódź")


# --- truncation -------------------------------------------------------------------------------


def test_a_text_that_fits_is_sent_as_it_is() -> None:
    exactly = "x" * 160
    assert sms.truncate(exactly) == exactly  # at the limit: nothing cut, no "..."
    assert sms.truncate("short") == "short"


def test_a_cut_text_keeps_its_beginning_and_ends_with_three_dots() -> None:
    words = "Stad Gent: uw afspraak op dinsdag 1 december om 10:30 aan het Migratieloket is bevestigd. " * 3
    cut = sms.truncate(words)
    assert cut.endswith("...")
    kept = cut.removesuffix("...")
    assert words.startswith(kept)  # the resident reads the start of the message, not just "..."
    assert kept == words[: len(kept)] and len(kept) >= 150  # everything up to the dots that fits is kept
    assert sms.septets(cut) <= 160


def test_a_cut_one_septet_over_the_limit_keeps_157_characters() -> None:
    text = "abcdefghij" * 16 + "k"  # 161 septets
    assert sms.truncate(text) == text[:157] + "..."  # 157 + 3 = 160 exactly
    assert sms.septets(sms.truncate(text)) == 160


def test_a_cut_does_not_leave_a_space_before_the_dots() -> None:
    text = "a" * 156 + " bcdefgh"  # the cut falls right after the space
    assert sms.truncate(text) == "a" * 156 + "..."


def test_a_cut_never_splits_an_extension_character() -> None:
    # 156 septets, then "€" (2 septets) would make 158 > 157: it is left out whole.
    text = "a" * 156 + "€" + "b" * 10
    assert sms.truncate(text) == "a" * 156 + "..."
    # With room for it (155 + 2 = 157), it is kept.
    text = "a" * 155 + "€" + "b" * 10
    assert sms.truncate(text) == "a" * 155 + "€..."


def test_a_shorter_limit_is_honoured() -> None:
    assert sms.truncate("abcdefghij", limit=8) == "abcde..."
    assert sms.truncate("abcdefgh", limit=8) == "abcdefgh"


@given(GSM7_TEXT)
def test_truncation_keeps_the_longest_beginning_that_leaves_room_for_the_dots(text: str) -> None:
    cut = sms.truncate(text)
    assert sms.septets(cut) <= 160
    if sms.septets(text) <= 160:
        assert cut == text
    else:
        fits = 0  # the longest beginning of at most 157 septets
        while sms.septets(text[: fits + 1]) <= 157:
            fits += 1
        assert cut == text[:fits].rstrip() + "..."


# --- transliteration --------------------------------------------------------------------------


def test_characters_outside_gsm7_are_replaced_by_their_nearest_gsm7_letters() -> None:
    assert sms.to_gsm7("façade") == "facade"  # ç: replaced (GSM-7 has only the capital Ç)
    assert sms.to_gsm7("Œuvre œuf") == "OEuvre oeuf"
    assert sms.to_gsm7("‘a’ “b” «c» x–y—z …") == '\'a\' "b" "c" x-y-z ...'
    assert sms.to_gsm7("10\u00a0h\u202f30") == "10 h 30"  # non-breaking spaces become spaces
    assert sms.to_gsm7("rôle naïf") == "role naif"  # accents GSM-7 lacks are stripped
    assert sms.to_gsm7("é è à ü Ç {€}") == "é è à ü Ç {€}"  # what GSM-7 has stays
    assert sms.to_gsm7("日本") == "??"  # nothing to keep: a visible placeholder, not a silent gap
    assert sms.to_gsm7("`x`") == "'x'"


# --- composing one SMS ------------------------------------------------------------------------


def test_compose_collapses_whitespace_and_adds_each_part_that_fits() -> None:
    text = sms.compose("Stad  Gent:\n afspraak   bevestigd.", ["Annuleren: https://x/m/1", "Tot dan!"])
    assert text == "Stad Gent: afspraak bevestigd. Annuleren: https://x/m/1 Tot dan!"


def test_an_optional_part_is_added_when_it_fits_exactly() -> None:
    essential = "a" * 150
    assert sms.compose(essential, ["b" * 9]) == essential + " " + "b" * 9  # 160 septets: still one SMS
    assert sms.compose(essential, ["b" * 10]) == essential  # 161: left out
    # A later, shorter part may still fit after a long one was left out.
    assert sms.compose(essential, ["b" * 40, "ok"]) == essential + " ok"


def test_an_optional_part_is_transliterated_and_may_use_a_separator() -> None:
    assert sms.compose("Gent", ["Façade"], sep=" | ") == "Gent | Facade"


def test_a_long_essential_part_is_cut_and_leaves_no_room_for_the_link() -> None:
    text = sms.compose("Uw afspraak " * 20, ["https://loket.gent/manage/abc"])
    assert text.startswith("Uw afspraak Uw afspraak") and text.endswith("...")
    assert "https" not in text and sms.septets(text) <= 160
