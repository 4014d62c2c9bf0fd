"""What kind of page this is: article, documentation, forum, product, listing, service or
collection, guessed from the page's own markup and its extracted text (never from the URL).

Signals, strongest first: schema.org types (JSON-LD / microdata), ``og:type``, then the shape
of the page: code blocks (documentation), repeated posts or replies (forum), a buy button
(product), many short linked entries (listing / collection), long prose (article).
"""

from __future__ import annotations

import re

_JSONLD_TYPE = re.compile(rb'"@type"\s*:\s*(\[[^\]]*\]|"[^"]*")')
_ITEMTYPE = re.compile(rb'itemtype=["\']https?://schema\.org/(\w+)', re.I)
_QUOTED = re.compile(rb'"([^"]+)"')
_OG_TYPE = re.compile(rb'<meta[^>]+property=["\']og:type["\'][^>]+content=["\']([^"\']+)', re.I)
_CODE = re.compile(rb"<pre[\s>]", re.I)
_FORUM = re.compile(rb'class=["\'][^"\']*\b(reply|replies|thread|topic|message-body|'
                    rb'answer|forum|post-?body|username|user-?info)\b', re.I)
_BUY = re.compile(rb"add to (cart|bag|basket)|buy now|in den warenkorb|ajouter au panier",
                  re.I)
_LINK_LINE = re.compile(r"^\s*(?:[-*+]\s*)?\[[^\]]+\]\([^)]+\)\s*$")

SCHEMA = {
    "article": {"Article", "NewsArticle", "BlogPosting", "Report", "ScholarlyArticle"},
    "documentation": {"TechArticle", "APIReference", "HowTo"},
    "forum": {"DiscussionForumPosting", "QAPage", "Question", "SocialMediaPosting"},
    "product": {"Product", "IndividualProduct", "ProductGroup"},
    "listing": {"ItemList", "SearchResultsPage", "OfferCatalog"},
    "collection": {"CollectionPage"},
    "service": {"Service", "ProfessionalService", "LocalBusiness", "Organization"},
}


def _schema_types(head: bytes) -> set[str]:
    types = {t.decode("utf-8", "replace") for t in _ITEMTYPE.findall(head)}
    for match in _JSONLD_TYPE.finditer(head):
        types.update(t.decode("utf-8", "replace") for t in _QUOTED.findall(match.group(1)))
    return types


def classify(html: bytes, markdown: str) -> str:
    head = html[:400_000]
    types = _schema_types(head)
    for kind in ("forum", "documentation", "listing", "collection", "product"):
        if types & SCHEMA[kind]:
            # Product markup on a page listing many products is a listing.
            if kind == "product" and (types & SCHEMA["listing"]):
                return "listing"
            return kind
    og = _OG_TYPE.search(head)
    og_type = og.group(1).decode("utf-8", "replace").lower() if og else ""
    lines = [line for line in markdown.splitlines() if line.strip()]
    words = len(markdown.split())
    link_lines = sum(1 for line in lines if _LINK_LINE.match(line))
    if len(_FORUM.findall(head)) >= 10:
        return "forum"
    if "product" in og_type or (_BUY.search(head) and words < 1500):
        return "product"
    if len(_CODE.findall(head)) >= 3:
        return "documentation"
    if lines and link_lines / len(lines) > 0.4:
        return "listing"
    if types & SCHEMA["article"] or og_type == "article":
        return "article"
    words_per_line = words / len(lines) if lines else 0
    if types & SCHEMA["service"]:
        return "service"
    # Prose (long lines) reads as an article; short lines of links and labels as a listing.
    return "article" if words_per_line >= 12 or words >= 600 else "listing"
