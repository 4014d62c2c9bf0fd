"""Page metadata (title, author, date, site name, ...) by trafilatura's rules, faster.

`trafilatura.extract_metadata` spends most of its time on two things this project does not
need or can do cheaper: categories/tags/licence (not stored), and the author search, whose
XPath expressions call a Python regex for every element of the page, three times over. Here
the same author rules (`trafilatura.xpaths.AUTHOR_XPATHS` and `AUTHOR_DISCARD_XPATHS`, in the
same order, with the same text checks) run on the few elements one cheap pass finds, and the
discard rules are checked only for the ancestors of a match (no pruned copy of the page is
made); the rest is trafilatura's own functions in trafilatura's order. Should trafilatura's
internals move, the public `extract_metadata` is used instead.

The title is then checked against the page's <h1>: see `choose_title`.
"""

from __future__ import annotations

import contextlib
import re
from copy import deepcopy
from typing import Any

import trafilatura
from lxml import etree
from lxml.html import HtmlElement

_AUTHOR_RULES_1 = re.compile(r"author-?name|AuthorName|authorName")
_AUTHOR_RULES_2_ID = re.compile(r"author|zuozhe|bianji|xiaobian")
_AUTHOR_RULES_2_CLASS = re.compile(
    r"author|channel-name|zuozhe|bianji|xiaobian|submitted-by|posted-by|journalist-name")
_AUTHOR_RULES_3_ID = re.compile(r"[Aa]uthor")
_AUTHOR_RULES_3_CLASS = re.compile(r"[Aa]uthor|screenname|writer|[Bb]yline")
_DISCARD_ID = re.compile(r"^comments|comment-?list|ProductReviews")
_DISCARD_CLASS = re.compile(
    r"^[Cc]omments|commentlist|comments-list|sidebar|is-hidden|quote|embedly-instagram|"
    r"article-(?:share|support)|print|category|meta-date|meta-reviewer")


def _first_rule(el: HtmlElement) -> bool:
    if el.tag == "author":
        return True
    if el.tag not in ("a", "address", "div", "link", "p", "span", "strong"):
        return False
    a = el.attrib
    return (a.get("rel") == "author" or a.get("id") == "author" or a.get("class") == "author"
            or a.get("itemprop") == "author name"
            or a.get("data-testid") in ("AuthorCard", "AuthorURL")
            or bool(_AUTHOR_RULES_1.search(a.get("class", ""))))


def _second_rule(el: HtmlElement) -> bool:
    if el.tag not in ("a", "div", "h3", "h4", "p", "span"):
        return False
    a = el.attrib
    return (a.get("class") in ("byline", "username", "byl", "BBL")
            or "author" in a.get("itemprop", "")
            or bool(_AUTHOR_RULES_2_ID.search(a.get("id", "")))
            or bool(_AUTHOR_RULES_2_CLASS.search(a.get("class", ""))))


def _third_rule(el: HtmlElement) -> bool:
    a = el.attrib
    return ("Byline" in a.get("data-component", "") or "author" in a.get("itemprop", "")
            or bool(_AUTHOR_RULES_3_ID.search(a.get("id", "")))
            or bool(_AUTHOR_RULES_3_CLASS.search(a.get("class", ""))))


def _discarded(el: HtmlElement) -> bool:
    if el.tag in ("time", "figure"):
        return True
    if el.tag not in ("a", "div", "section", "span"):
        return False
    a = el.attrib
    return (a.get("id") == "comments" or a.get("class") in ("comments", "title", "date")
            or bool(_DISCARD_ID.search(a.get("id", "")))
            or bool(_DISCARD_CLASS.search(a.get("class", "")))
            or "Figure" in a.get("data-component", ""))


# Any of the author rules above can only match an element with one of these in its class or
# id, or with an itemprop, rel, data-testid or data-component attribute (or an <author>): a
# cheap test that leaves the exact rules a few elements to look at.
_AUTHOR_HINT = re.compile(
    r"uthor|yl|username|BBL|channel-name|zuozhe|bianji|xiaobian|submitted-by|posted-by|"
    r"journalist-name|screenname|writer")


def _author_candidates(tree: HtmlElement) -> list[HtmlElement]:
    found = []
    hint = _AUTHOR_HINT.search
    for el in tree.iter(etree.Element):
        attrib = el.attrib
        if not attrib:
            if el.tag == "author":
                found.append(el)
        elif ("itemprop" in attrib or "rel" in attrib or "data-testid" in attrib
              or "data-component" in attrib or el.tag == "author"
              or hint(attrib.get("class", "")) or hint(attrib.get("id", ""))):
            found.append(el)
    return found


_AUTHOR_MAX_CHARS = 120


def _delete_keeping_tail(element: HtmlElement) -> None:
    """Remove the element and its children; its tail joins the previous sibling or parent
    (what trafilatura's pruning does)."""
    parent = element.getparent()
    if parent is None:
        return
    if element.tail:
        previous = element.getprevious()
        if previous is None:
            parent.text = (parent.text or "") + element.tail
        else:
            previous.tail = (previous.tail or "") + element.tail
    parent.remove(element)


def _text_without_discarded(element: HtmlElement) -> str:
    """The element's text as it reads once the discarded parts inside it are pruned."""
    inner = [el for el in element.iterdescendants() if isinstance(el.tag, str) and _discarded(el)]
    if inner:
        element = deepcopy(element)
        for el in [el for el in element.iterdescendants()
                   if isinstance(el.tag, str) and _discarded(el)]:
            _delete_keeping_tail(el)
    return " ".join(" ".join(element.itertext()).split())


def _author(tree: HtmlElement, md: Any) -> str | None:
    """trafilatura's author search: the author rules in order, on the page less its
    comments, sidebars, dates and figures (the discard rules); the first match whose text
    has a plausible length wins. Same result as pruning a copy of the page, without the copy."""
    pruned: dict[HtmlElement, bool] = {}  # element -> it or an ancestor is discarded

    def is_pruned(el: HtmlElement) -> bool:
        chain = []
        node: HtmlElement | None = el
        while node is not None and node not in pruned:
            chain.append(node)
            node = node.getparent()
        state = pruned[node] if node is not None else False
        for node in reversed(chain):
            state = state or _discarded(node)
            pruned[node] = state
        return state

    hits = _author_candidates(tree)
    for rule in (_first_rule, _second_rule, _third_rule):
        for el in hits:
            if rule(el) and not is_pruned(el):
                content = _text_without_discarded(el)
                if 2 < len(content) < _AUTHOR_MAX_CHARS:
                    author: str | None = md.normalize_authors(None, content)
                    return author
    return None


def page_metadata(tree: HtmlElement, url: str | None) -> Any:
    """trafilatura's metadata Document (title, author, date, sitename, description, ...)."""
    try:
        from courlan import extract_domain
        from htmldate import find_date
        from trafilatura import metadata as md
        from trafilatura.settings import set_date_params
    except ImportError:  # pragma: no cover - trafilatura reorganised: the slower public path
        return trafilatura.extract_metadata(tree, default_url=url)
    date_config = set_date_params(True)
    meta = md.examine_meta(tree)
    if meta.author and " " not in meta.author:
        meta.author = None
    with contextlib.suppress(Exception):  # malformed JSON-LD: keep what the meta tags said
        meta = md.extract_meta_json(tree, meta)
    if not meta.title:
        meta.title = md.extract_title(tree)
    if not meta.author:
        meta.author = _author(tree, md)
    if not meta.url:
        meta.url = md.extract_url(tree, url)
    if meta.url:
        meta.hostname = extract_domain(meta.url, fast=True)
    date_config["url"] = meta.url
    meta.date = find_date(tree, **date_config)
    if not meta.sitename:
        meta.sitename = md.extract_sitename(tree)
    if meta.sitename:
        meta.sitename = meta.sitename.lstrip("@")
        if meta.sitename and "." not in meta.sitename and not meta.sitename[0].isupper():
            meta.sitename = meta.sitename.title()
    elif meta.url and (match := md.META_URL.match(meta.url)):
        meta.sitename = match[1]
    meta.filedate = date_config.get("max_date")
    meta.clean_and_trim()
    return meta


_WORDS = re.compile(r"\w+")
_SITE_SUFFIX = re.compile(r"^(.*\S)\s+[|\-–—·•»:]\s+([^|\-–—·•»]{1,60})$")
_SUFFIX_MAX_WORDS = 5


def strip_site_suffix(title: str) -> str:
    """'How to X | Site Name' -> 'How to X' (a short last segment after a separator)."""
    match = _SITE_SUFFIX.match(title.strip())
    if (match and len(_WORDS.findall(match.group(2))) <= _SUFFIX_MAX_WORDS
            and len(_WORDS.findall(match.group(1))) >= 2):
        return match.group(1)
    return title


def choose_title(tree: HtmlElement, meta_title: str | None) -> str | None:
    """The page's first <h1> when it agrees with the metadata title (half of its words occur
    in that title less its ' | Site name' suffix: the <h1> is the title without the site's
    decoration, not a logo or a section name), else the metadata title less that suffix."""
    base = strip_site_suffix(meta_title) if meta_title else None
    for h1 in tree.iter("h1"):
        heading = " ".join(" ".join(h1.itertext()).split())
        if heading:
            if not base:
                return heading
            words = set(_WORDS.findall(heading.lower()))
            shared = words & set(_WORDS.findall(base.lower()))
            if len(shared) >= len(words) / 2:
                return heading
        break
    return base
