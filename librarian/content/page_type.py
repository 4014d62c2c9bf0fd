"""What kind of page this is: article, documentation, forum, product, listing, service or
collection, guessed from the page's own markup and its extracted text (never from the URL).

Signals, strongest first: schema.org types (JSON-LD and microdata, read from the parsed tree),
``og:type``, then the shape of the page: code blocks (documentation), repeated posts or replies
(forum), a buy button (product), many short linked entries (listing / collection), long prose
(article). The same schema.org table also tells the extractor whether a page sells one product
(:func:`is_single_product`), so both read the markup by one set of rules.
"""

from __future__ import annotations

import re

from lxml import etree
from lxml.html import HtmlElement

SCHEMA = {
    "article": {"Article", "NewsArticle", "BlogPosting", "Report", "ScholarlyArticle"},
    "documentation": {"TechArticle", "APIReference", "HowTo"},
    "forum": {"DiscussionForumPosting", "QAPage", "Question", "SocialMediaPosting"},
    "product": {"Product", "IndividualProduct", "ProductGroup"},
    "listing": {"ItemList", "SearchResultsPage", "OfferCatalog"},
    "collection": {"CollectionPage"},
    "service": {"Service", "ProfessionalService", "LocalBusiness", "Organization"},
}
# Pages that list things: their Product markup is one per listed item, not the page's own.
_LIST_TYPES = SCHEMA["listing"] | SCHEMA["collection"]

_JSONLD_TYPE = re.compile(r'"@type"\s*:\s*(\[[^\]]*\]|"[^"]*")')
_QUOTED = re.compile(r'"([^"]+)"')
# compiled XPath runs in libxml2 (`iterfind` paths are walked in Python)
_JSONLD_SCRIPTS = etree.XPath('.//script[@type="application/ld+json"]')
_MICRODATA_ITEMS = etree.XPath(".//*[@itemtype]")
_OG_TYPE = etree.XPath('.//meta[@property="og:type"]')
_BUY_BUTTON = re.compile(r"\badd to (?:cart|bag|basket)\b|\bbuy now\b", re.I)

# Shape of the served page (raw HTML, so markup the extractor dropped still counts).
_CODE = re.compile(rb"<pre[\s>]", re.I)
_FORUM = re.compile(rb'class=["\'][^"\']*\b(reply|replies|thread|topic|message-body|'
                    rb'answer|forum|post-?body|username|user-?info)\b', re.I)
_BUY = re.compile(rb"add to (cart|bag|basket)|buy now|in den warenkorb|ajouter au panier",
                  re.I)
_LINK_LINE = re.compile(r"^\s*(?:[-*+]\s*)?\[[^\]]+\]\([^)]+\)\s*$")
HEAD_BYTES = 400_000


def schema_types(tree: HtmlElement) -> set[str]:
    """schema.org types declared in JSON-LD and microdata."""
    types: set[str] = set()
    for script in _JSONLD_SCRIPTS(tree):
        for match in _JSONLD_TYPE.finditer(script.text or ""):
            types.update(_QUOTED.findall(match.group(1)))
    for element in _MICRODATA_ITEMS(tree):
        types.add(element.get("itemtype", "").rstrip("/").rsplit("/", 1)[-1])
    return types


def og_type(tree: HtmlElement) -> str:
    for meta in _OG_TYPE(tree):
        return (meta.get("content") or "").strip().lower()
    return ""


def is_single_product(tree: HtmlElement, types: set[str]) -> bool:
    """A page selling one product: Product markup, og:type product or a buy button, and no
    item-list markup (category pages carry Product markup for each of their items)."""
    if types & _LIST_TYPES:
        return False
    if types & SCHEMA["product"] or og_type(tree).startswith("product"):
        return True
    return any(_BUY_BUTTON.search(" ".join(button.itertext()))
               for button in tree.iter("button"))


def classify(types: set[str], og: str, html: bytes, markdown: str) -> str:
    """The page type from its schema.org ``types``, its ``og`` type, the served ``html`` and
    the extracted ``markdown``."""
    head = html[:HEAD_BYTES]
    for kind in ("forum", "documentation", "listing", "collection", "product"):
        if types & SCHEMA[kind]:
            # Product markup on a page listing many products is a listing.
            if kind == "product" and (types & SCHEMA["listing"]):
                return "listing"
            return kind
    lines = [line for line in markdown.splitlines() if line.strip()]
    words = len(markdown.split())
    link_lines = sum(1 for line in lines if _LINK_LINE.match(line))
    if len(_FORUM.findall(head)) >= 10:
        return "forum"
    if "product" in og or (_BUY.search(head) and words < 1500):
        return "product"
    if len(_CODE.findall(head)) >= 3:
        return "documentation"
    if lines and link_lines / len(lines) > 0.4:
        return "listing"
    if types & SCHEMA["article"] or og == "article":
        return "article"
    words_per_line = words / len(lines) if lines else 0
    if types & SCHEMA["service"]:
        return "service"
    # Prose (long lines) reads as an article; short lines of links and labels as a listing.
    return "article" if words_per_line >= 12 or words >= 600 else "listing"
