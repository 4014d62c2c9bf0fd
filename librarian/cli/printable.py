"""Text from fetched pages made safe to print on a terminal.

Titles, URLs, messages and snippets come from pages anyone can write, and a text/plain page can
carry bytes a terminal obeys: escape sequences that clear the screen, retitle the window, hide a
link behind other text (OSC 8) or, on some terminals, write to the clipboard; a carriage return
that prints a line over another; bidi overrides that make a line read as something it is not.
Everything the CLI prints from the API (or from its processes' logs) passes through
:func:`printable` on its way out. ``--json`` output needs nothing: JSON escapes all of them.
"""

from __future__ import annotations

import re

# ECMA-48 sequences, with their 7-bit (ESC …) and 8-bit (C1) introducers, removed whole so that
# their parameters do not end up as text either. One cut short is removed up to where it stops.
_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"  # CSI: colours, cursor, clear
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    # ^ OSC (titles, OSC 8 links, clipboard), DCS, SOS, PM, APC: up to BEL or ST
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"  # any other escape sequence (ESC c resets the terminal)
)
# Bidi embeddings, overrides and isolates (the marks LRM, RLM and ALM reorder nothing and stay);
# Unicode's line and paragraph separators; lone surrogates, which no terminal encoding can print.
_INVISIBLE = "\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff"
# Line breaks, as a terminal or a reader sees them.
_BREAKS = re.compile("\r\n|[\n\r\t\v\f\x85\u2028\u2029]")
_CONTROLS = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_INVISIBLE}]")


def printable(text: object, *, multiline: bool = False) -> str:
    """``text`` without escape sequences, control characters and bidi overrides.

    One line unless ``multiline``: a line break or tab inside a title must not start a line that
    looks like the CLI's own output, so each becomes a space. With ``multiline``, ``\\n`` and
    ``\\t`` stay (``\\r\\n`` becomes ``\\n``) and a lone ``\\r`` goes.
    """
    cleaned = _SEQUENCES.sub("", str(text))
    cleaned = cleaned.replace("\r\n", "\n") if multiline else _BREAKS.sub(" ", cleaned)
    return _CONTROLS.sub("", cleaned)
