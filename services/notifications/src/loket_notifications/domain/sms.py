"""SMS text rules: the GSM-7 alphabet and the 160-character single-message limit.

A message that stays in the GSM 03.38 default alphabet fits 160 septets in one SMS; one
character outside it switches the whole message to UCS-2 (70 characters). Characters of the
extension table (`^{}\\[~]|€` and form feed) cost two septets. So we transliterate what is not
GSM-7 (é stays, ê becomes e, ç becomes c, curly quotes become straight ones), and compose the
text from an essential part plus optional parts added only while they still fit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

SMS_LIMIT = 160

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

_REPLACEMENTS = {
    "‘": "'",
    "’": "'",
    "‚": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "«": '"',
    "»": '"',
    "–": "-",
    "—": "-",
    "…": "...",
    "\u00a0": " ",
    "\u202f": " ",
    "ç": "c",
    "œ": "oe",
    "Œ": "OE",
    "`": "'",
}


def septets(text: str) -> int:
    """Length in GSM-7 septets; raises ValueError for a character GSM-7 cannot carry."""
    total = 0
    for char in text:
        if char in GSM7_BASIC:
            total += 1
        elif char in GSM7_EXTENSION:
            total += 2
        else:
            raise ValueError(f"{char!r} is not in the GSM-7 alphabet")
    return total


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def to_gsm7(text: str) -> str:
    """Transliterate to the GSM-7 alphabet: keep what it has, strip accents it lacks, drop the rest."""
    out: list[str] = []
    for char in text:
        if char in GSM7_BASIC or char in GSM7_EXTENSION:
            out.append(char)
            continue
        if char in _REPLACEMENTS:
            out.append(_REPLACEMENTS[char])
            continue
        decomposed = unicodedata.normalize("NFKD", char)
        kept = "".join(c for c in decomposed if c in GSM7_BASIC or c in GSM7_EXTENSION)
        out.append(kept if kept else "?")
    return "".join(out)


def truncate(text: str, limit: int = SMS_LIMIT) -> str:
    """Cut to at most `limit` septets, ending with "..." when cut."""
    if septets(text) <= limit:
        return text
    out = ""
    for char in text:
        if septets(out + char) > limit - 3:
            break
        out += char
    return out.rstrip() + "..."


def compose(essential: str, optional: Sequence[str] = (), limit: int = SMS_LIMIT, sep: str = " ") -> str:
    """One single-SMS GSM-7 text: the essential part (cut if it must be), then each optional part
    that still fits, in order (e.g. the manage link)."""
    text = truncate(to_gsm7(" ".join(essential.split())), limit)
    for part in optional:
        candidate = text + sep + to_gsm7(part)
        if septets(candidate) <= limit:
            text = candidate
    return text
