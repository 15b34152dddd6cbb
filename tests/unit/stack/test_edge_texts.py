"""The edge's own answers (429, 413, 502, 504, 404) speak the page's language with the API's words:
each language map of deploy/edge/loket.conf.template gives, for nl, en and fr, the catalogue's text."""

from __future__ import annotations

import re

from loket_runtime.i18n import LANGUAGES
from loket_stack.edge import EDGE_TEXTS, TEMPLATE

MAP = re.compile(r"map \$loket_language \$(\w+) \{(.*?)\n\}", re.S)
ENTRY = re.compile(r'^\s*(nl|fr|default) "(.*)";$', re.M)


def language_maps() -> dict[str, dict[str, str]]:
    """{map name: {language: text}} as the template writes them (`default` is English)."""
    maps = {}
    for name, body in MAP.findall(TEMPLATE.read_text()):
        entries = dict(ENTRY.findall(body))
        maps[name] = {"en" if key == "default" else key: text for key, text in entries.items()}
    return maps


def test_every_text_of_the_edge_is_the_catalogues_in_every_language() -> None:
    maps = language_maps()
    assert set(maps) == set(EDGE_TEXTS), "a map without its text in EDGE_TEXTS, or a text without its map"
    for name, text in EDGE_TEXTS.items():
        for language in LANGUAGES:
            assert maps[name][language] == text.in_language(language), (name, language)


def test_the_edges_answers_use_the_maps() -> None:
    template = TEMPLATE.read_text()
    for name in EDGE_TEXTS:
        assert f'"${name}"' in template, f"${name} is never written in an answer"
