"""Bytes to text: the declared charset, a <meta> charset, or detection; never an exception."""

from __future__ import annotations

import re

import charset_normalizer

_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", re.I)


def decode_body(body: bytes, declared: str | None) -> str:
    """Decode with the declared charset, else a <meta> charset, else detection; never raise."""
    for candidate in (declared, _meta_charset(body)):
        if candidate:
            try:
                return body.decode(candidate)
            except (LookupError, UnicodeDecodeError):
                continue
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    matches = list(charset_normalizer.from_bytes(body[:200_000]))
    if not matches:
        return body.decode("utf-8", errors="replace")
    best = matches[0]
    # Detection cannot tell the Latin code pages apart on short texts; windows-1252 is the HTML
    # Standard's default for undeclared pages and the web's most common legacy encoding, so it
    # wins whenever it decodes about as cleanly as the detector's first pick.
    for match in matches:
        if (match.encoding == "cp1252" and match.chaos <= best.chaos + 0.05
                and match.coherence >= best.coherence - 0.05):
            best = match
            break
    return body.decode(best.encoding, errors="replace")


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:4096])
    return match.group(1).decode("ascii") if match else None
