"""Main content and metadata from a fetched response: HTML (main content), PDF (text per page),
plain text and Markdown as they are; anything else is refused with ``unsupported_type``, and
challenge pages, soft 404s and empty shells never pass as content."""

from __future__ import annotations

import re

from pydantic import BaseModel

from librarian.content.decoding import decode_body
from librarian.content.fetch import FetchedResponse
from librarian.content.html.extract import extract_html
from librarian.content.page_signals import is_challenge, is_soft_404
from librarian.content.pdf.extract import extract_pdf
from librarian.errors import ContentError, ErrorCode

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown"})
PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
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
    # The catalog's current version of this URL, if any, for refreshes.
    previous_hash: str | None = None
    previous_model: str | None = None
    page_type: str | None = None  # article, documentation, forum, product, listing, ...
    page_count: int | None = None  # PDF
    truncated: bool = False  # PDF longer than the page cap


def extract_content(response: FetchedResponse, *, pdf_max_pages: int) -> ExtractedDocument:
    ctype = response.content_type
    if ctype in ("", "application/octet-stream", "binary/octet-stream"):
        ctype = _sniff(response.body) or ctype
    if ctype in HTML_TYPES:
        if is_challenge(response.body):
            raise ContentError(ErrorCode.BLOCKED_BY_SITE,
                               "the site answered with a bot check or captcha, not the page",
                               url=response.url)
        doc = _from_html(response)
        if is_soft_404(response.body, len(doc.text.split())):
            raise ContentError(ErrorCode.NOT_FOUND, "the page says it does not exist (soft 404)",
                               url=response.url)
    elif ctype in TEXT_TYPES:
        doc = _from_text(response, ctype)
    elif ctype in PDF_TYPES:
        doc = _from_pdf(response, pdf_max_pages)
    else:
        raise ContentError(ErrorCode.UNSUPPORTED_TYPE,
                           f"content type {ctype or 'unknown'!r} is not supported",
                           url=response.url)
    if len(doc.text.split()) < MIN_WORDS:
        raise ContentError(ErrorCode.EMPTY_CONTENT,
                           "no readable main content was found", url=response.url)
    return doc


def _from_html(response: FetchedResponse) -> ExtractedDocument:
    found = extract_html(response.body, url=response.final_url,
                         declared_charset=response.charset)
    if found is None:
        raise ContentError(ErrorCode.EMPTY_CONTENT,
                           "no readable main content was found in the page",
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
        page_type="document",
        last_modified=response.last_modified, status_code=response.status_code,
    )


def _from_pdf(response: FetchedResponse, max_pages: int) -> ExtractedDocument:
    pdf = extract_pdf(response.body, url=response.url, max_pages=max_pages)
    pages = [" ".join(page.split()) for page in pdf.pages]
    markdown = "\n\n".join(page for page in pages if page)
    if pdf.truncated:
        markdown += (f"\n\n*Only the first {len(pdf.pages)} of {pdf.page_count} pages were"
                     " read.*")
    first_line = next((p[:200] for p in pages if p), None)
    return ExtractedDocument(
        url=response.url, final_url=response.final_url, content_type="application/pdf",
        markdown=markdown, text=markdown, title=pdf.title or first_line, author=pdf.author,
        date=pdf.date, raw=response.body, raw_size=len(response.body), etag=response.etag,
        last_modified=response.last_modified, status_code=response.status_code,
        page_count=pdf.page_count, truncated=pdf.truncated, page_type="document",
    )


def _sniff(body: bytes) -> str:
    head = body[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "text/html"
    if body[:5] == b"%PDF-":
        return "application/pdf"
    return ""
