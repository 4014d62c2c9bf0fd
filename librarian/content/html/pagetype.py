"""A cheap guess at what kind of page this is, from its own markup (never from its URL)."""

from __future__ import annotations

import re

from lxml import etree
from lxml.html import HtmlElement

_JSONLD_TYPE = re.compile(r'"@type"\s*:\s*(\[[^\]]*\]|"[^"]*")')
_QUOTED = re.compile(r'"([^"]+)"')
_BUY_BUTTON = re.compile(r"\badd to (?:cart|bag|basket)\b|\bbuy now\b", re.I)
_LIST_TYPES = {"ItemList", "CollectionPage", "OfferCatalog", "SearchResultsPage"}
# compiled XPath runs in libxml2 (`iterfind` paths are walked in Python)
_JSONLD_SCRIPTS = etree.XPath('.//script[@type="application/ld+json"]')
_MICRODATA_ITEMS = etree.XPath(".//*[@itemtype]")
_OG_TYPE = etree.XPath('.//meta[@property="og:type"]')


def schema_types(tree: HtmlElement) -> set[str]:
    """schema.org types declared in JSON-LD and microdata."""
    types: set[str] = set()
    for script in _JSONLD_SCRIPTS(tree):
        for match in _JSONLD_TYPE.finditer(script.text or ""):
            types.update(_QUOTED.findall(match.group(1)))
    for element in _MICRODATA_ITEMS(tree):
        types.add(element.get("itemtype", "").rstrip("/").rsplit("/", 1)[-1])
    return types


def is_single_product(tree: HtmlElement, types: set[str]) -> bool:
    """A page selling one product: Product markup, og:type product or a buy button, and no
    item-list markup (category pages carry Product markup for each of their items)."""
    if types & _LIST_TYPES:
        return False
    if "Product" in types:
        return True
    for meta in _OG_TYPE(tree):
        if (meta.get("content") or "").strip().lower().startswith("product"):
            return True
    return any(_BUY_BUTTON.search(" ".join(button.itertext()))
               for button in tree.iter("button"))
