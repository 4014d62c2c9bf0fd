"""Main content and metadata from a fetched response: HTML through trafilatura, plain text and
Markdown as they are, anything else refused with ``unsupported_type``."""

from __future__ import annotations

import re

import charset_normalizer
import trafilatura
from pydantic import BaseModel

from librarian.errors import ContentError
from librarian_assets.fetch import FetchedResponse

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
MIN_WORDS = 3
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_.:-]+)""", re.I)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)


class ExtractedDocument(BaseModel):
    url: str
    final_url: str
    content_type: str
    markdown: str
    text: str
    title: str | None = None
    author: str | None = None
    date: str | None = None
    sitename: str | None = None
    description: str | None = None
    language: str | None = None
    image: str | None = None
    raw: bytes = b""
    raw_size: int
    html_text_ratio: float | None = None  # extracted characters / page characters (HTML only)
    etag: str | None = None
    last_modified: str | None = None
    status_code: int = 200


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


def extract_content(response: FetchedResponse) -> ExtractedDocument:
    ctype = response.content_type or _sniff(response.body)
    if ctype in HTML_TYPES:
        doc = _from_html(response)
    elif ctype in TEXT_TYPES:
        doc = _from_text(response, ctype)
    else:
        raise ContentError("unsupported_type",
                           f"content type {ctype or 'unknown'!r} is not supported",
                           url=response.url)
    if len(doc.text.split()) < MIN_WORDS:
        raise ContentError("empty_content", "no readable main content was found", url=response.url)
    return doc


def _from_html(response: FetchedResponse) -> ExtractedDocument:
    html = decode_body(response.body, response.charset)
    found = trafilatura.extract_with_metadata(
        html, url=response.final_url, output_format="markdown", include_links=True,
        include_tables=True, include_formatting=True, include_comments=False,
    )
    if found is None or not (found.text or "").strip():
        raise ContentError("empty_content", "no readable main content was found in the page",
                           url=response.url)
    markdown = (found.text or "").strip()
    plain = (found.raw_text or markdown).strip()
    return ExtractedDocument(
        url=response.url, final_url=response.final_url, content_type=response.content_type,
        markdown=markdown, text=plain, title=found.title, author=found.author, date=found.date,
        sitename=found.sitename, description=found.description, language=found.language,
        image=found.image, raw=response.body, raw_size=len(response.body),
        html_text_ratio=round(len(plain) / max(1, len(html)), 4),
        etag=response.etag, last_modified=response.last_modified,
        status_code=response.status_code,
    )


def _from_text(response: FetchedResponse, ctype: str) -> ExtractedDocument:
    text = decode_body(response.body, response.charset).replace("\r\n", "\n").strip()
    heading = _HEADING.search(text) if ctype != "text/plain" else None
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    title = heading.group(1) if heading else first_line[:200] or None
    return ExtractedDocument(
        url=response.url, final_url=response.final_url, content_type=ctype, markdown=text,
        text=text, title=title, raw=response.body, raw_size=len(response.body), etag=response.etag,
        last_modified=response.last_modified, status_code=response.status_code,
    )


def _meta_charset(body: bytes) -> str | None:
    match = _META_CHARSET.search(body[:4096])
    return match.group(1).decode("ascii") if match else None


def _sniff(body: bytes) -> str:
    head = body[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "text/html"
    return ""
