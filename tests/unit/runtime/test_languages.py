"""What the API says, in the resident's language (issue 16): the Dutch and French catalogues hold a
real translation of every text the source marks (and nothing else), every problem text in the
source is marked, the rule that picks the language, and answers rendered in it with Content-Language."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import AwareDatetime, BaseModel, Field

from loket_contracts.events import Localized
from loket_runtime.i18n import TRANSLATED, catalogue_path, negotiate, prefer_language, tr
from loket_runtime.problems import Problem, field_problem, install_problem_handlers

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [ROOT / "libs/runtime/src", *sorted((ROOT / "services").glob("*/src")), ROOT / "deploy/local/src"]
# Texts a translation may leave as they are: the same word, or only placeholders and punctuation.
SAME_IN = {
    "nl": {"Conflict", "%(field)s: %(message)s", "%(first)s; %(next)s"},
    "fr": set(),
}


def marked() -> dict[str, str]:
    """Every message id the source marks with `tr(...)`, with where it is."""
    found: dict[str, str] = {}
    for source in SOURCES:
        for filename, line, message, _comments, _context in extract_from_dir(source, keywords={"tr": None}):
            found.setdefault(message, f"{source.relative_to(ROOT)}/{filename}:{line}")
    return found


def catalogue(language: str) -> Catalog:
    with catalogue_path(language).open("rb") as source:
        return read_po(source, locale=language)


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_marked_text_has_a_translation(language: str) -> None:
    translations = catalogue(language)
    missing = [
        f"{where}: {msgid!r}"
        for msgid, where in sorted(marked().items(), key=lambda item: item[1])
        if (message := translations.get(msgid)) is None or not message.string or message.fuzzy
    ]
    assert not missing, f"untranslated in {language} (run `make translations`, then translate):\n" + "\n".join(missing)


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_catalogue_holds_no_text_the_source_no_longer_says(language: str) -> None:
    stale = {message.id for message in catalogue(language) if message.id} - set(marked())
    assert not stale, f"{language}: not in the source any more (run `make translations`): {sorted(stale)}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_every_placeholder_and_are_not_the_english(language: str) -> None:
    translations = catalogue(language)
    broken = [(message.id, [str(e) for e in errors]) for message, errors in translations.check() if errors]
    assert not broken, broken
    untranslated = [
        message.id
        for message in translations
        if message.id and message.string == message.id and message.id not in SAME_IN[language]
    ]
    assert not untranslated, f"{language}: the English copied as the translation: {untranslated}"


# Where the source raises a problem, the arguments a person reads (by position or by keyword).
TEXT_ARGUMENTS: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "Problem": ((1, 2), ("title", "detail")),
    "field_problem": ((1, 2), ("message", "title")),
    "too_large": ((2,), ("what",)),
    "RuleViolation": ((1,), ("message",)),
    "TransitionRefused": ((0,), ("message",)),
    "CatalogueRuleError": ((1,), ("message",)),
    "NotFound": ((0,), ()),  # the catalogue's, whose text the admin API answers with
    "Conflict": ((0,), ()),
    "_unauthorized": ((0,), ("detail",)),
    "_problem": ((2, 3), ("title", "detail")),
}

# Exceptions of these names elsewhere (the calendar's ops) are for the log; the API says its own text.
CATALOGUE_ONLY = {"NotFound", "Conflict"}


def _is_plain_text(node: ast.expr) -> bool:
    """A literal, an f-string, a concatenation or a .format() of them: English nobody translates."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _is_plain_text(node.left) or _is_plain_text(node.right)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


def test_every_problem_text_in_the_source_is_marked_for_translation() -> None:
    plain: list[str] = []
    for source in SOURCES:
        for path in sorted(source.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if name not in TEXT_ARGUMENTS or (name in CATALOGUE_ONLY and "loket_catalogue" not in path.parts):
                    continue
                positions, keywords = TEXT_ARGUMENTS[name]
                arguments = [a for i, a in enumerate(node.args) if i in positions]
                arguments += [k.value for k in node.keywords if k.arg in keywords]
                if any(_is_plain_text(a) for a in arguments):
                    plain.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...)")
    assert not plain, "texts not marked with tr(...):\n" + "\n".join(plain)


@pytest.mark.parametrize(
    ("header", "fallback", "language"),
    [
        (None, None, "nl"),  # no header: the city's language
        ("", None, "nl"),
        ("*", None, "nl"),
        ("de", None, "nl"),  # only languages we do not speak
        ("de, en;q=0.5", None, "en"),  # ... but one we speak, at a lower q: that one
        ("fr-BE,fr;q=0.9,en;q=0.8,nl;q=0.7", None, "fr"),
        ("nl;q=0.2, fr;q=0.8", None, "fr"),  # q decides, not the order
        ("en, fr", None, "en"),  # equal q: the first named
        ("EN-gb", None, "en"),
        ("fr;q=0, en;q=0.1", None, "en"),  # q=0: "not French"
        ("fr;q=oops, en;q=0.1", None, "en"),  # a q that is no number counts as 0
        (None, "fr", "fr"),  # a manage link: the booking's language
        ("de", "en", "en"),
        ("nl", "fr", "nl"),  # a language asked for wins over the booking's
        (None, "de", "nl"),
    ],
)
def test_the_language_of_an_answer(header: str | None, fallback: str | None, language: str) -> None:
    assert negotiate(header, fallback) == language


def test_a_text_is_its_english_and_gives_the_others() -> None:
    name = Localized(nl="Kinderkaart", en="Child's card", fr="Carte enfant")
    text = tr("%(product)s is for a child under %(age)s on the day of the appointment", product=name, age=12)
    assert text == "Child's card is for a child under 12 on the day of the appointment"
    assert text.in_language("nl") == "Kinderkaart is voor een kind dat op de dag van de afspraak jonger is dan 12 jaar"
    assert text.in_language("fr") == "Carte enfant est destiné à un enfant de moins de 12 ans le jour du rendez-vous"
    assert tr("Not found").in_language("en") == "Not found"
    nested = tr("%(field)s: %(message)s", field="start", message=tr("lies in the future"))
    assert nested.in_language("fr") == "start : se situe dans le futur"


class Body(BaseModel):
    start: AwareDatetime
    name: str = Field(max_length=5)


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/rule")
    async def rule() -> None:
        raise field_problem("contact.phone", tr("not a valid phone number; use e.g. +32 470 12 34 56"))

    @app.post("/model")
    async def model(body: Body) -> None:
        return None

    @app.post("/manage/{language}")
    async def manage(language: str, request: Request) -> None:
        prefer_language(request, language)
        raise Problem(404, tr("Not found"), tr("No booking with this id and token."), "not-found")

    @app.get("/down")
    async def down() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5433)")

    return TestClient(app, raise_server_exceptions=False)


def test_a_rule_is_answered_in_the_language_asked_for(client: TestClient) -> None:
    answers = {language: client.post("/rule", headers={"Accept-Language": language}) for language in ("nl", "en", "fr")}
    for language, answer in answers.items():
        assert answer.status_code == 422 and answer.headers["content-language"] == language
        assert answer.json()["type"] == "https://loket.gent/problems/validation"  # the contract stays
        assert answer.json()["errors"][0]["field"] == "contact.phone"
    assert answers["en"].json()["title"] == "Invalid request"
    assert answers["nl"].json()["title"] == "Ongeldige aanvraag"
    assert answers["fr"].json()["errors"][0]["message"].startswith("ce n'est pas un numéro de téléphone valable")
    assert answers["fr"].json()["detail"] == "contact.phone : " + answers["fr"].json()["errors"][0]["message"]


def test_validation_errors_are_answered_per_field_in_the_language_asked_for(client: TestClient) -> None:
    answer = client.post(
        "/model", json={"start": "2026-12-01T09:00:00", "name": "too long"}, headers={"Accept-Language": "fr-BE"}
    )
    assert answer.status_code == 422 and answer.headers["content-language"] == "fr"
    messages = {e["field"]: e["message"] for e in answer.json()["errors"]}
    assert messages == {
        "start": "indiquez l'heure avec son décalage horaire, par ex. 2026-12-01T09:00:00+01:00",
        "name": "doit compter au plus 5 caractères",
    }
    assert answer.json()["title"] == "Demande non valable"
    missing = client.post("/model", json={}, headers={"Accept-Language": "nl"})
    assert {e["message"] for e in missing.json()["errors"]} == {"is verplicht"}


def test_a_manage_link_speaks_the_booking_language_unless_another_is_asked_for(client: TestClient) -> None:
    unasked = client.post("/manage/fr")
    assert unasked.headers["content-language"] == "fr" and unasked.json()["title"] == "Introuvable"
    asked = client.post("/manage/fr", headers={"Accept-Language": "en-GB"})
    assert asked.headers["content-language"] == "en" and asked.json()["title"] == "Not found"


def test_the_framework_own_answers_are_translated_too(client: TestClient) -> None:
    answer = client.get("/nowhere", headers={"Accept-Language": "nl"})
    assert answer.status_code == 404 and answer.json()["detail"] == "Op dit adres staat niets."
    answer = client.get("/rule", headers={"Accept-Language": "fr"})
    assert answer.status_code == 405 and answer.json()["title"] == "Méthode non autorisée"


def test_an_outage_is_answered_in_the_language_asked_for(client: TestClient) -> None:
    answer = client.get("/down", headers={"Accept-Language": "fr"})
    assert answer.status_code == 503 and answer.headers["content-language"] == "fr"
    assert answer.headers["retry-after"] == "5" and answer.json()["type"].endswith("/unavailable")
    assert answer.json()["title"] == "Service indisponible"
    assert answer.json()["detail"].startswith("Un élément nécessaire à cette demande")
    assert "dans 5 secondes" in answer.json()["detail"]
