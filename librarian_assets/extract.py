"""Main content and metadata from a fetched response: HTML through trafilatura, plain text and
Markdown as they are, anything else refused with ``unsupported_type``."""

from __future__ import annotations

import re

from pydantic import BaseModel

from librarian.errors import ContentError
from librarian_assets.decoding import decode_body
from librarian_assets.fetch import FetchedResponse
from librarian_assets.html_content import extract_html

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
MIN_WORDS = 3
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
    found = extract_html(response.body, url=response.final_url,
                         declared_charset=response.charset)
    if found is None:
        raise ContentError("empty_content", "no readable main content was found in the page",
                           url=response.url)
    return ExtractedDocument(
        url=response.url, final_url=response.final_url, content_type=response.content_type,
        raw=response.body, raw_size=len(response.body), etag=response.etag,
        last_modified=response.last_modified, status_code=response.status_code,
        **found.model_dump(),
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


def _sniff(body: bytes) -> str:
    head = body[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "text/html"
    return ""
