"""What a user's name may hold: text that displays as what it is, wherever it is shown.

A name is shown to other people (lists, emails, consoles, logs read in a terminal), so it must not
change how what surrounds it displays, nor be an empty-looking impersonation. Refused:
- controls (C0, DEL, C1) and the line and paragraph separators: NUL cannot be stored, the others
  break lines where a name is shown, and some start terminal escape sequences (U+009B is CSI);
- bidirectional controls, Unicode's Bidi_Control property: embeddings, overrides, isolates, and the
  marks LRM, RLM and ALM. They reorder the text displayed after them ("Trojan Source",
  CVE-2021-42574). The marks go too: they flip the neutral characters beside them ("(admin)" shown
  as ")admin("), and a display that mixes directions isolates user text itself (HTML's <bdi>), so a
  name never needs one;
- names with nothing visible: only format characters (zero-width spaces and joiners, the BOM,
  tags), combining marks without a base, spaces, and the letters that display as blank (the Hangul
  fillers, the blank Braille pattern).
Joiners and non-joiners inside a visible name stay: emoji sequences and Persian or Indic text need them.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Any

from pydantic_core import PydanticCustomError

# As regular-expression text that Python and JSON Schema (ECMA-262) both read, so that the
# OpenAPI schema states the same rule (schemas.Name puts it there).
CONTROL_CHARACTERS = r"\u0000-\u001f\u007f-\u009f\u2028\u2029"
BIDI_CONTROLS = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
NAME_PATTERN = f"^[^{CONTROL_CHARACTERS}{BIDI_CONTROLS}]*$"
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
_BIDI = re.compile(f"[{BIDI_CONTROLS}]")

# Other (controls, format, surrogates), separators (spaces, line and paragraph) and marks.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Mc", "Me"})
# Letters and symbols that display as nothing: the usual material of blank-looking names.
BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def refuse_hidden_controls(value: Any) -> Any:
    """The name as sent (before trimming: a trailing newline is refused, not trimmed away)."""
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise PydanticCustomError("control_character", "must not contain control characters or line breaks")
        if _BIDI.search(value):
            raise PydanticCustomError("bidi_control", "must not contain bidirectional control characters")
    return value


def require_visible(value: str) -> str:
    """The trimmed name, if something in it displays."""
    if not any(_visible(character) for character in value):
        raise PydanticCustomError("invisible_name", "must contain a visible character")
    return value


def _visible(character: str) -> bool:
    return character not in BLANK_CHARACTERS and unicodedata.category(character) not in INVISIBLE_CATEGORIES


@functools.cache
def visible_character_pattern() -> str:
    """A regular expression that finds one visible character ("something visible"), for the schema.

    The invisible characters are whole Unicode categories, so the class is written out from this
    Python's Unicode database (0.2 s, once: api/openapi.py asks when the schema is built).
    The BMP as \\u escapes, which Python and ECMA-262 read alike; beyond it, the characters
    themselves (ECMA-262 reads those with the `u` flag, which JSON Schema asks for). A pattern of its
    own beside NAME_PATTERN (JSON Schema's patterns search, they are not anchored), since one
    pattern of both was misread by schemathesis's generator, which sent control characters.
    """
    return f"[^{_class_of(code for code in _scalar_values() if not _visible(chr(code)))}]"


def _scalar_values() -> Any:
    """Every code point but the surrogates. A lone surrogate is no Unicode text and is refused in any
    field (422), and a regex engine that works on scalar values (jsonschema-rs, which schemathesis
    validates with) rejects a pattern naming one: the whole rule then went unread."""
    return (code for code in range(sys.maxunicode + 1) if not 0xD800 <= code <= 0xDFFF)


def _class_of(codes: Any) -> str:
    """A character class body for these code points (ascending), as ranges."""
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "".join(_escaped(low) if low == high else f"{_escaped(low)}-{_escaped(high)}" for low, high in ranges)


def _escaped(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)
