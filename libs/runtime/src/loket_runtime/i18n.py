"""Texts the API says to people, in Dutch, English and French (gettext catalogues read by Babel).

A text to show is written `tr("book at least %(hours)s hours ahead", hours=24)`: a `Text`, which is
a plain `str` holding the English (so it reads, logs and compares as before) and carries its
message id and parameters, so that `Text.in_language("fr")` gives it in French when the answer is
rendered. English is the source language: the message ids are the English texts. The Dutch and
French translations live in `locale/<language>/LC_MESSAGES/loket.po` next to this module, one
catalogue for every service (one vocabulary, one file per language to translate); they are
compiled in memory when this module is imported, so a broken catalogue stops a service at start.
`make translations` extracts the message ids from the source and updates both catalogues.

Which language an answer speaks (`negotiate`, the rule of API.md): the first of nl, en and fr by
the q-values of `Accept-Language` (a region counts as its language: `fr-BE` is fr; `q=0` means
"not this one"); when the header names none of them (absent, `*`, or only other languages), the
language the request itself is about, when it has one (a manage link speaks the booking's own
language: `prefer_language`), else Dutch, the city's language. So `de, en;q=0.5` is answered in
English, `de` and `*` in Dutch.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from starlette.requests import HTTPConnection

from loket_contracts.events import Localized

LANGUAGES = ("nl", "en", "fr")
SOURCE_LANGUAGE = "en"  # the message ids are English
DEFAULT_LANGUAGE = "nl"  # the city's language
TRANSLATED = ("nl", "fr")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "loket"


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def _compile(language: str) -> Translations:
    """The `.po` source of `language` as gettext reads it (a `.mo` written in memory; fuzzy
    entries are left out, as `pybabel compile` does)."""
    with catalogue_path(language).open("rb") as source:
        catalog = read_po(source, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


CATALOGUES: dict[str, Translations] = {language: _compile(language) for language in TRANSLATED}


def _value_in(value: object, language: str) -> object:
    if isinstance(value, Text):
        return value.in_language(language)
    if isinstance(value, Localized):
        return str(getattr(value, language))
    return value


class Text(str):
    """A translatable text: the `str` is its English; `msgid` and `params` give the others.

    `params` are put in with `%(name)s`; a parameter that is a `Text` or a catalogue `Localized`
    (a product's name) is itself given in the language asked for."""

    msgid: str
    params: Mapping[str, object]

    def __new__(cls, msgid: str, params: Mapping[str, object] | None = None) -> Text:
        params = dict(params or {})
        text = super().__new__(cls, _fill(msgid, params, SOURCE_LANGUAGE))
        text.msgid, text.params = msgid, params
        return text

    def in_language(self, language: str) -> str:
        """The text in `language` (one of LANGUAGES); a message the catalogue lacks stays English."""
        translations = CATALOGUES.get(language)
        pattern = translations.gettext(self.msgid) if translations is not None else self.msgid
        return _fill(pattern, self.params, language)


def _fill(pattern: str, params: Mapping[str, object], language: str) -> str:
    if not params:  # no parameters: a "%" in the text is a percent sign, not a placeholder
        return pattern
    return pattern % {name: _value_in(value, language) for name, value in params.items()}


def tr(msgid: str, /, **params: object) -> Text:
    """Mark `msgid` (English, with `%(name)s` placeholders) for translation; the keyword `tr` is
    what `make translations` extracts, so write the message id as a literal here."""
    return Text(msgid, params)


def in_language(value: Any, language: str) -> Any:
    """`value` with every `Text` in it (in dicts and lists too) given in `language`."""
    if isinstance(value, Text):
        return value.in_language(language)
    if isinstance(value, dict):
        return {key: in_language(item, language) for key, item in value.items()}
    if isinstance(value, list):
        return [in_language(item, language) for item in value]
    return value


def negotiate(accept_language: str | None, fallback: str | None = None) -> str:
    """The language of an answer (see the module's rule): e.g. `negotiate("fr-BE,fr;q=0.9,en;q=0.8")`
    is "fr", `negotiate("de")` is "nl", `negotiate(None, "en")` is "en"."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")):
        tag, *parameters = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, number = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(number)
                except ValueError:
                    quality = 0.0
        language = tag.lower().split("-")[0]
        if language in LANGUAGES and quality > 0:
            ranked.append((-quality, position, language))
    if ranked:
        return min(ranked)[2]
    return fallback if fallback in LANGUAGES else DEFAULT_LANGUAGE


def prefer_language(connection: HTTPConnection, language: str) -> None:
    """Answer this request in `language` when its Accept-Language names none we speak: a manage
    link (confirm, cancel, reschedule, calendar.ics, view) speaks the booking's own language."""
    connection.state.language = language


def answer_language(connection: HTTPConnection) -> str:
    """The language to answer this request in: `negotiate` over its Accept-Language and any
    `prefer_language` set while it was handled."""
    return negotiate(connection.headers.get("accept-language"), getattr(connection.state, "language", None))
