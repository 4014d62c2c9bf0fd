"""Main content of an HTML page: Markdown for the library, plain text, and metadata.

How the main content is chosen
------------------------------
No single extractor is best on every kind of page: trafilatura is precise on articles and
documentation but drops the link-heavy cards of listings and the scattered sections of
landing pages; chrome-stripping (resiliparse) keeps those but also keeps more noise. So the
page goes through several extractors that fail in different ways (see `html.candidates`),
and the one that agrees best with the others wins: for each candidate, the mean overlap
of its word 4-grams with every other candidate's (the Dice coefficient of the two
multisets). A candidate that went astray (a sidebar, a cookie banner, a single card)
shares little with the rest; one that found the content shares most of it. Three cases
skip the vote:

- pages that sell a single product (by their own markup) keep trafilatura's result, which
  is the precise one there: the others add the reviews, recommendations and carousels;
- when trafilatura and resiliparse, the two most different extractors, agree, there is no
  vote: trafilatura's result stands, unless resiliparse's is clearly the shorter (the
  extra that even resiliparse, the one that keeps more, left out is boilerplate);
- when one candidate holds five times the text of every other, the others each caught a
  fragment (a title, a teaser, a caption) and agree on nothing but it: the large one wins.

`markdown` is the winner's Markdown less repeated paragraphs (the same long paragraph
twice is a page's desktop and mobile copies, or a quote of a post shown again), and
`text` is derived from that same Markdown, so the two always describe the same extraction.
"""

from __future__ import annotations

import re
from collections import Counter

from lxml.html import HtmlElement
from pydantic import BaseModel

from librarian.content.decoding import decode_body
from librarian.content.html.candidates import (
    Candidate,
    drop_never_content,
    drop_noscript,
    markdown_to_text,
    parse_html,
    readability_candidate,
    repeated_items_candidate,
    resiliparse_candidate,
    trafilatura_candidate,
)
from librarian.content.html.metadata import choose_title, page_metadata
from librarian.content.page_type import classify, is_single_product, og_type, schema_types

__all__ = ["ExtractedHtml", "extract_html", "markdown_to_text"]


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
    extractor: str | None = None  # which candidate won (trafilatura, resiliparse, ...)
    page_type: str  # article, documentation, forum, product, listing, service, collection


_WORD = re.compile(r"\w+")
AGREE = 0.8  # Dice overlap of trafilatura and resiliparse above which there is no vote
SHORTER = 0.9  # agreeing resiliparse wins when it has less than this share of the 4-grams
DOMINANT = 5  # a candidate with this many times the 4-grams of every other one wins
REPEATED_WORDS = 15  # paragraphs of at least this many words are kept once


def _shingles(candidate: Candidate) -> Counter[int]:
    """The candidate's word 4-grams as a multiset, each gram by its hash (no tuple kept)."""
    if candidate.grams is None:
        words = _WORD.findall(candidate.text)
        candidate.grams = Counter(map(hash, zip(words, words[1:], words[2:], words[3:],
                                                 strict=False)))
    return candidate.grams


def _agreement(candidates: list[Candidate]) -> list[float]:
    """Per candidate: mean Dice overlap of its 4-gram multiset with each other candidate's."""
    grams = [_shingles(c) for c in candidates]
    sizes = [g.total() for g in grams]
    scores = [0.0] * len(candidates)
    for i in range(len(candidates)):
        for j in range(i + 1, len(candidates)):
            if sizes[i] and sizes[j]:
                small, large = sorted((grams[i], grams[j]), key=len)
                shared = sum(min(n, large[g]) for g, n in small.items() if g in large)
                dice = 2 * shared / (sizes[i] + sizes[j])
                scores[i] += dice
                scores[j] += dice
    others = max(1, len(candidates) - 1)
    return [s / others for s in scores]


def _dice(a: Candidate, b: Candidate) -> float:
    return _agreement([a, b])[0]


def choose(candidates: list[Candidate]) -> Candidate:
    """The candidate that agrees best with the others (ties: the earlier one), unless one
    dwarfs all the others (see the module's documentation)."""
    if len(candidates) >= 2:
        sizes = [_shingles(c).total() for c in candidates]
        largest = max(range(len(candidates)), key=lambda i: sizes[i])
        if all(sizes[largest] >= DOMINANT * max(1, size)
               for i, size in enumerate(sizes) if i != largest):
            return candidates[largest]
    if len(candidates) < 3:  # two cannot outvote each other: keep the first (trafilatura)
        return candidates[0]
    scores = _agreement(candidates)
    return candidates[max(range(len(candidates)), key=lambda i: (scores[i], -i))]


def _drop_repeated_paragraphs(markdown: str) -> str:
    """Each long paragraph once (code blocks, tables and indented blocks are left alone)."""
    seen: set[str] = set()
    kept: list[str] = []
    in_code = False
    lines = markdown.split("\n")
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
        elif not in_code and not stripped.startswith("|") and not line.startswith("    "):
            words = _WORD.findall(line.lower())
            if len(words) >= REPEATED_WORDS:
                key = " ".join(words)
                if key in seen:
                    continue
                seen.add(key)
        kept.append(line)
    return markdown if len(kept) == len(lines) else "\n".join(kept)


def _main_content(html: str, tree: HtmlElement, url: str | None, types: set[str]
                  ) -> Candidate | None:
    first = trafilatura_candidate(tree, url)
    if first is not None and is_single_product(tree, types):
        return first
    second = resiliparse_candidate(html)
    if first is not None and second is not None and _dice(first, second) >= AGREE:
        # the two most different extractors agree: no vote needed
        shorter = _shingles(second).total() < SHORTER * _shingles(first).total()
        return second if shorter else first
    # the other voters read the page as served (`tree` has lost its graphics and scripts):
    # parsed again, which only pages that come to a vote pay for
    page = parse_html(html)
    found = [first, second]
    if page is not None:
        found += [repeated_items_candidate(page), readability_candidate(page, owned=True)]
    candidates = [c for c in found if c is not None]
    return choose(candidates) if candidates else None


def extract_html(body: bytes, *, url: str | None, declared_charset: str | None
                 ) -> ExtractedHtml | None:
    """Main content of an HTML page as Markdown and plain text, with its metadata."""
    html = decode_body(body, declared_charset)
    tree = parse_html(html)
    if tree is None:
        return None
    # what neither the metadata nor trafilatura reads (styles, scripts, graphics, frames)
    # goes first, in place: every later scan of the tree is shorter
    drop_never_content(tree)
    meta = page_metadata(tree, url)
    title = choose_title(tree, meta.title)
    drop_noscript(tree)  # script-less fallbacks: some hold an author, none the main text
    types = schema_types(tree)
    winner = _main_content(html, tree, url, types)
    markdown, text, extractor = "", "", None
    if winner is not None:
        full = winner.markdown()
        markdown, extractor = _drop_repeated_paragraphs(full), winner.name
        text = winner.plain if winner.plain is not None and markdown is full \
            else markdown_to_text(markdown)
    if not text.strip() and meta.description:
        # nothing in the body (a page rendered by script): its own summary is the content
        markdown, extractor = meta.description.strip(), "description"
        text = markdown_to_text(markdown)
    if not text.strip():
        return None
    return ExtractedHtml(
        markdown=markdown, text=text, title=title, author=meta.author,
        date=meta.date, sitename=meta.sitename, description=meta.description,
        language=meta.language, image=meta.image,
        html_text_ratio=round(len(text) / max(1, len(html)), 4), extractor=extractor,
        page_type=classify(types, og_type(tree), body, markdown))
