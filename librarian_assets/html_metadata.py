"""Page metadata (title, author, date, site name, ...) by trafilatura's rules, faster.

`trafilatura.extract_metadata` spends most of its time on two things this project does not
need or can do cheaper: categories/tags/licence (not stored), and the author search, whose
XPath expressions call a Python regex for every element of the page, three times over. Here
the same author rules (`trafilatura.xpaths.AUTHOR_XPATHS` and `AUTHOR_DISCARD_XPATHS`, in the
same order, with the same text checks) run as one Python pass per rule set, and the rest is
trafilatura's own functions in trafilatura's order. Should trafilatura's internals move, the
public `extract_metadata` is used instead.

The title is then checked against the page's <h1>: see `choose_title`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any

import trafilatura
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


def _elements(tree: HtmlElement) -> Iterable[HtmlElement]:
    return (el for el in tree.iter() if isinstance(el.tag, str))


def _discard_selector(tree: HtmlElement) -> list[HtmlElement]:
    return [el for el in _elements(tree) if _discarded(el)]


def _author_selectors(tree: HtmlElement) -> list[Callable[[HtmlElement], list[HtmlElement]]]:
    """The three author rules as selectors, all matched in one pass over the tree."""
    found: list[list[HtmlElement]] = [[], [], []]
    for el in _elements(tree):
        for rule, match in enumerate((_first_rule, _second_rule, _third_rule)):
            if match(el):
                found[rule].append(el)
    def selector(hits: list[HtmlElement]) -> Callable[[HtmlElement], list[HtmlElement]]:
        return lambda _tree: hits

    return [selector(hits) for hits in found]


def _author(tree: HtmlElement, md: Any, prune: Any) -> str | None:
    subtree = prune(deepcopy(tree), [_discard_selector])
    author = md.extract_metainfo(subtree, _author_selectors(subtree), len_limit=120)
    return md.normalize_authors(None, author) if author else None


def page_metadata(tree: HtmlElement, url: str | None) -> Any:
    """trafilatura's metadata Document (title, author, date, sitename, description, ...)."""
    try:
        from courlan import extract_domain
        from htmldate import find_date
        from trafilatura import metadata as md
        from trafilatura.htmlprocessing import prune_unwanted_nodes
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
        meta.author = _author(tree, md, prune_unwanted_nodes)
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
