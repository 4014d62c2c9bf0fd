"""Validation and canonical form of submitted URLs.

The canonical URL is the catalog's identity for an item: two spellings of one page must map to one
item, so scheme and host are lower-cased, IDN hosts become punycode, default ports, fragments,
dot segments and tracking parameters go, and the query is sorted.

The run and partition that ingest a URL are derived from its canonical form in
:mod:`librarian.runs`.
"""

from __future__ import annotations

import posixpath
import re
import socket
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import idna

from librarian.errors import InvalidURL

MAX_URL_LENGTH = 2048
ALLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid", "mc_cid",
    "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id", "oly_enc_id", "vero_id", "_ga",
})
TRACKING_PREFIXES = ("utm_",)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True)
class CanonicalURL:
    url: str
    host: str


def canonicalize(raw: str) -> CanonicalURL:
    """Validate ``raw`` and return its canonical form, or raise :class:`InvalidURL`."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidURL("URL is empty", url=raw if isinstance(raw, str) else None)
    text = raw.strip()
    if len(text) > MAX_URL_LENGTH:
        raise InvalidURL(f"URL is longer than {MAX_URL_LENGTH} characters", url=text[:200])
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise InvalidURL("URL contains control characters", url=text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidURL("URL is not valid Unicode", url=text.encode("utf-8", "replace").decode()
                         ) from exc
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"URL cannot be parsed: {exc}", url=text) from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise InvalidURL(f"only http and https URLs are accepted, not {scheme or 'no scheme'!r}",
                         url=text)
    if parts.username is not None or parts.password is not None:
        raise InvalidURL("URLs with credentials in them are refused", url=text)
    host = _canonical_host(parts.hostname or "", text)
    netloc = host if ":" not in host else f"[{host}]"
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    path = _canonical_path(parts.path)
    query = _canonical_query(parts.query)
    url = urlunsplit((scheme, netloc, path, query, ""))
    if len(url) > MAX_URL_LENGTH:  # percent-encoding can multiply the length of non-ASCII text
        raise InvalidURL(f"URL is longer than {MAX_URL_LENGTH} characters once encoded",
                         url=url[:200])
    return CanonicalURL(url=url, host=host)


def _canonical_host(hostname: str, original: str) -> str:
    host = hostname.rstrip(".").lower()
    if not host:
        raise InvalidURL("URL has no host", url=original)
    if ":" in host:  # IPv6 literal: urlsplit already removed the brackets
        return host
    if _NUMERIC_HOST.fullmatch(host):
        # Decimal, octal and hex spellings of IPv4 (2130706433, 0x7f.1, 0177.0.0.1) are the
        # address they resolve to: spell them as one, so guards and keys see a single form.
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError as exc:
            raise InvalidURL(f"invalid IPv4 address {hostname!r}", url=original) from exc
    if host.isascii():
        if not re.fullmatch(r"[a-z0-9_.-]+", host) or ".." in host:
            raise InvalidURL(f"invalid host {hostname!r}", url=original)
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidURL(f"invalid international host {hostname!r}: {exc}", url=original) from exc


def _normalise_escapes(part: str, safe: str) -> str:
    """RFC 3986 §6.2.2: decode escapes of unreserved characters only, upper-case the others,
    and percent-encode what may not appear raw. ``%2F`` stays ``%2F``: it is not ``/``."""
    def unescape(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else match.group(0).upper()

    return quote(_ESCAPE.sub(unescape, part), safe=safe + "%")


def _canonical_path(path: str) -> str:
    if not path:
        return "/"
    normalised = posixpath.normpath(path)
    if path.endswith("/") and not normalised.endswith("/"):
        normalised += "/"
    if normalised.startswith("//"):  # normpath keeps a leading '//' (POSIX); a URL path must not
        normalised = "/" + normalised.lstrip("/")
    return _normalise_escapes(normalised, "/:@!$&'()*+,;=")


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    kept = []
    for pair in query.split("&"):
        if not pair:
            continue
        name = unquote(pair.split("=", 1)[0]).lower()
        if name in TRACKING_PARAMS or name.startswith(TRACKING_PREFIXES):
            continue
        # Pairs keep their own encoding (a query may not be UTF-8); only escapes are normalised.
        kept.append(_normalise_escapes(pair, "=:@!$'()*+,;/?"))
    return "&".join(sorted(kept))
