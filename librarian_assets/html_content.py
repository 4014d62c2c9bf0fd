"""Main content of an HTML page: Markdown for the library, plain text, and metadata."""

from __future__ import annotations

import re

import trafilatura
from pydantic import BaseModel

from librarian_assets.decoding import decode_body


class ExtractedHtml(BaseModel):
    markdown: str
    text: str
    title: str | None = None
    author: str | None = None
    date: str | None = None
    sitename: str | None = None
    description: str | None = None
    language: str | None = None
    image: str | None = None
    html_text_ratio: float


_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")


def markdown_to_text(markdown: str) -> str:
    """The words of the Markdown without its syntax (link targets, emphasis markers)."""
    return _EMPHASIS.sub("", _LINK.sub(r"\1", markdown))


def extract_html(body: bytes, *, url: str | None, declared_charset: str | None
                 ) -> ExtractedHtml | None:
    """Main content of an HTML page as Markdown and plain text, with its metadata."""
    html = decode_body(body, declared_charset)
    found = trafilatura.extract_with_metadata(
        html, url=url, output_format="markdown", include_links=True,
        include_tables=True, include_formatting=True, include_comments=False,
    )
    if found is None or not (found.text or "").strip():
        return None
    markdown = (found.text or "").strip()
    text = markdown_to_text(markdown)
    return ExtractedHtml(
        markdown=markdown, text=text, title=found.title, author=found.author, date=found.date,
        sitename=found.sitename, description=found.description, language=found.language,
        image=found.image, html_text_ratio=round(len(text) / max(1, len(html)), 4))
