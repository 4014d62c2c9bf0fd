"""Candidate main-content extractions of one page, each as an HTML fragment or Markdown.

Each extractor sees the page differently, and each fails on different pages:

- trafilatura: paragraph-level heuristics, best on articles and documentation;
- resiliparse: drops page chrome (navigation, header, footer, sidebars) and keeps the rest,
  good on landing and service pages whose content is spread over many sections;
- trafilatura's readability port: the single densest block of prose;
- repeated items: the largest run of similar sibling elements (cards, rows, posts), which
  is what listings, category pages and threads are made of and what the others drop as
  link-heavy boilerplate.

`html.extract.extract_html` picks one of them by agreement; this module only produces them.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

import lxml.html
import trafilatura
from lxml import etree
from lxml.html import HtmlElement
from markdownify import markdownify
from trafilatura.utils import load_html

_INLINE_TAG = re.compile(r"</?(?:u|sub|sup|mark|del|ins|s|small|kbd|span|abbr)\b[^>]*>", re.I)
# [text](target "title"): the target in <...>, or with balanced parentheses (Wikipedia-style
# URLs); a title as markdownify writes it
_LINK = re.compile(
    r"!?\[([^\]]*)\]\((?:<[^>]*>|(?:[^()\s]|\([^()\s]*\))*)"
    r"(?:\s+(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'))?\s*\)")
_LOOSE_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~<])")
_BLANK_LINES = re.compile(r"\n{3,}")


def markdown_to_text(markdown: str) -> str:
    """The words of the Markdown without its syntax (link targets, emphasis, escapes, tags)."""
    text = _INLINE_TAG.sub("", markdown)
    text = _EMPHASIS.sub("", _LOOSE_LINK.sub(r"\1", _LINK.sub(r"\1", text)))
    return _ESCAPE.sub(r"\1", text)


def fragment_to_markdown(fragment: str) -> str:
    """Markdown of an HTML fragment: ATX headings, '-' bullets, links and tables kept."""
    markdown = markdownify(fragment, heading_style="ATX", bullets="-", strip=["img"],
                           escape_misc=False)
    lines = [line.rstrip() for line in markdown.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# characters XML forbids (trafilatura strips them before parsing), as UTF-8: U+0000-U+001F but
# tab and line breaks, and U+FFFE/U+FFFF
_CONTROL_BYTES = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
_NON_CHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")


def parse_html(html: str) -> HtmlElement | None:
    """The tree trafilatura's `load_html` makes of a decoded page, sooner: libxml2 is given
    UTF-8 bytes, which it reads as they are (a str is converted first), and the rare page
    with characters XML forbids is the only one rewritten (trafilatura rewrites them all)."""
    try:
        from trafilatura.utils import DOCTYPE_TAG, HTML_PARSER
    except ImportError:  # pragma: no cover - trafilatura reorganised: its own loader
        return load_html(html)
    data = html.encode("utf-8", "surrogatepass")
    if (len(data.translate(None, _CONTROL_BYTES)) != len(data)
            or any(character in data for character in _NON_CHARACTERS)):
        return load_html(html)
    beginning = html[:50].lower()
    end = html.find("\n") if "doctype" in beginning else 0
    firstline = html[:end] if end >= 0 else html
    faulty_root = any("<html" in line and line.endswith("/>")
                      for line in html[:4096].splitlines()[:4])
    if faulty_root or ("doctype" in beginning and DOCTYPE_TAG.search(firstline)):
        return load_html(html)  # trafilatura repairs the start of the page first
    try:
        tree = lxml.html.fromstring(data, parser=HTML_PARSER)
    except Exception:  # whatever libxml2 refuses, trafilatura's loader decides
        return load_html(html)
    if tree is None or len(tree) < 1:
        return load_html(html)
    if "html" not in beginning and len(tree) < 2:
        return None  # not a page: trafilatura's check for a fragment passed as a document
    return tree


@dataclass
class Candidate:
    """One extraction: its plain text (for voting) and a way to get its Markdown."""

    name: str
    text: str
    _markdown: Callable[[], str]
    grams: Counter[int] | None = None  # hashed word 4-grams, filled when voting
    plain: str | None = None  # markdown_to_text of its Markdown, when that is its `text`

    def markdown(self) -> str:
        return self._markdown()


def _element_text(element: HtmlElement) -> str:
    return " ".join(" ".join(element.itertext()).split())


def _fragment_candidate(name: str, fragment: str) -> Candidate | None:
    if not fragment.strip():
        return None
    try:
        root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    except (etree.ParserError, ValueError, AssertionError):  # lxml asserts on odd fragments
        return None
    text = _element_text(root)
    if not text:
        return None
    return Candidate(name, text, lambda: fragment_to_markdown(fragment))


# --- trafilatura -------------------------------------------------------------------------------

_NEVER_CONTENT = ("style", "svg", "template", "iframe", "canvas")


def drop_never_content(tree: HtmlElement, *also: str) -> HtmlElement:
    """Remove in place what no extractor keeps (styles, scripts other than JSON-LD, vector
    graphics, frames): every later XPath scan of the tree is shorter. JSON-LD stays, for
    the metadata and the page-type guess."""
    etree.strip_elements(tree, *_NEVER_CONTENT, *also, with_tail=False)
    for script in list(tree.iter("script")):
        if script.get("type") != "application/ld+json" and script.getparent() is not None:
            script.drop_tree()
    return tree


def drop_noscript(tree: HtmlElement) -> HtmlElement:
    """Remove <noscript> in place (its tail text stays)."""
    etree.strip_elements(tree, "noscript", with_tail=False)
    return tree


def trafilatura_candidate(tree: HtmlElement, url: str | None) -> Candidate | None:
    """trafilatura's main text as Markdown (links, tables, formatting; reader comments left out).
    trafilatura works on its own copy of the tree."""
    markdown = trafilatura.extract(
        tree, url=url, output_format="markdown",
        include_links=True, include_tables=True, include_formatting=True, include_comments=False)
    markdown = (markdown or "").strip()
    if not markdown:
        return None
    text = markdown_to_text(markdown)
    return Candidate("trafilatura", text, lambda: markdown, plain=text)


# --- resiliparse -------------------------------------------------------------------------------

def resiliparse_candidate(html: str) -> Candidate | None:
    """The page less its chrome (navigation, header, footer, sidebars), by resiliparse; its
    Markdown comes from resiliparse's minimal HTML (headings, paragraphs, lists, links)."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    options: dict[str, Any] = {"main_content": True, "list_bullets": False, "alt_texts": False,
                               "noscript": True}
    text = " ".join(extract_plain_text(tree, preserve_formatting=False, **options).split())
    if not text:
        return None

    def markdown() -> str:
        fragment = extract_plain_text(tree, preserve_formatting="minimal_html", links=True,
                                      **options)
        return fragment_to_markdown(fragment)

    return Candidate("resiliparse", text, markdown)


# --- readability -------------------------------------------------------------------------------

def readability_candidate(tree: HtmlElement, *, owned: bool = False) -> Candidate | None:
    """The densest prose block, by the readability port that ships with trafilatura. It edits
    the tree: a copy, unless the caller gives the tree away (`owned`)."""
    try:
        from trafilatura.readability_lxml import Document
    except ImportError:  # pragma: no cover - the port moved: run without this voter
        return None
    try:
        fragment = Document(tree if owned else deepcopy(tree)).summary()
    except Exception:  # a voter that fails simply does not vote
        return None
    return _fragment_candidate("readability", fragment or "")


# --- repeated items ----------------------------------------------------------------------------

_CHROME_TAGS = ("script", "style", "noscript", "template", "svg", "nav", "header", "footer",
                "aside", "form", "button", "select", "iframe", "dialog", "head")
_CHROME_ROLES = {"navigation", "banner", "contentinfo", "search", "dialog", "menu", "menubar"}
_CHROME_NAME = re.compile(
    r"(?:^|[-_ ])(?:nav|navbar|menu|footer|header|breadcrumbs?|cookie|consent|newsletter|"
    r"sidebar|social|share|sharing|modal|popup|banner|skip|subscribe|signup|login|pagination|"
    r"pager|filters?|facets?|sort)(?:[-_ ]|$)", re.I)
_DIGIT = re.compile(r"\d")
_MIN_ITEMS = 3
_MIN_ITEM_CHARS = 15
_ITEM_CHARS_CAP = 600


def _strip_chrome(tree: HtmlElement) -> HtmlElement:
    etree.strip_elements(tree, *_CHROME_TAGS, with_tail=False)
    for element in list(tree.iter()):
        if not isinstance(element.tag, str) or element.getparent() is None:
            continue
        attrib = element.attrib
        names = f"{attrib.get('class', '')} {attrib.get('id', '')}"
        if (attrib.get("role") in _CHROME_ROLES or attrib.get("aria-hidden") == "true"
                or "hidden" in attrib
                or (element.tag not in ("body", "main") and _CHROME_NAME.search(names))):
            element.drop_tree()
    return tree


def _signature(element: HtmlElement) -> tuple[str, str]:
    classes = sorted(c for c in element.attrib.get("class", "").split() if not _DIGIT.search(c))
    return str(element.tag), " ".join(classes)


def _largest_run(tree: HtmlElement) -> list[HtmlElement]:
    """Siblings sharing tag and classes that together hold the most text (each item capped)."""
    best: list[HtmlElement] = []
    best_score = 0
    for parent in tree.iter():
        if not isinstance(parent.tag, str) or len(parent) < _MIN_ITEMS:
            continue
        groups: dict[tuple[str, str], list[HtmlElement]] = defaultdict(list)
        for child in parent:
            if isinstance(child.tag, str):
                groups[_signature(child)].append(child)
        for members in groups.values():
            if len(members) < _MIN_ITEMS:
                continue
            lengths = [len(_element_text(m)) for m in members]
            if sum(length >= _MIN_ITEM_CHARS for length in lengths) < _MIN_ITEMS:
                continue
            score = sum(min(length, _ITEM_CHARS_CAP) for length in lengths)
            if score > best_score:
                best, best_score = members, score
    return best


def repeated_items_candidate(tree: HtmlElement) -> Candidate | None:
    """The largest run of similar sibling elements (cards, rows, posts), chrome removed."""
    items = _largest_run(_strip_chrome(deepcopy(tree)))
    if not items:
        return None
    fragment = "".join(
        etree.tostring(item, encoding="unicode", method="html", with_tail=False)
        for item in items)
    return _fragment_candidate("repeated", fragment)
