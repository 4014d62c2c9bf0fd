"""Extractive summary and keywords, offline and language-light.

The summary is the few sentences that best cover the document's frequent content words, kept in
document order. Keywords are the most frequent content words, weighted up when they appear in the
title or headings.
"""

from __future__ import annotations

import re
from collections import Counter

_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+(?=[^\s])")
_WORD = re.compile(r"[^\W\d_]{3,}", re.U)
_MARKDOWN_NOISE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)|[*_`>#|]+")
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just me
more most my myself no nor not now of off on once only or other our ours ourselves out over own
same she should so some such than that the their theirs them themselves then there these they
this those through to too under until up very was we were what when where which while who whom
why will with would you your yours yourself yourselves one two may might must shall us new like
get got also use used using many much well way even back made make see said says per via
der die das und ist nicht mit von den dem des ein eine einer zu auf für sich les des une pour
dans sur est pas que qui avec par plus sont el la los las del que por con para una como
""".split())


def plain(markdown: str) -> str:
    return _MARKDOWN_NOISE.sub(lambda m: m.group(1) or " ", markdown)


def content_words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in STOPWORDS]


def summarize(markdown: str, max_sentences: int = 3, max_chars: int = 600) -> str:
    text = plain(markdown)
    sentences = [s.strip() for block in text.split("\n") for s in _SENTENCE.split(block)]
    sentences = [s for s in sentences if 6 <= len(s.split()) <= 80]
    if not sentences:
        return " ".join(text.split())[:max_chars]
    freq = Counter(content_words(text))
    if not freq:
        return " ".join(sentences[:max_sentences])[:max_chars]
    top = freq.most_common(1)[0][1]

    def score(s: str) -> float:
        words = content_words(s)
        return sum(freq[w] / top for w in set(words)) / (len(words) ** 0.5 or 1)

    ranked = sorted(range(len(sentences)), key=lambda i: (-score(sentences[i]), i))
    chosen = sorted(ranked[:max_sentences])
    summary = " ".join(sentences[i] for i in chosen)
    return summary if len(summary) <= max_chars else summary[: max_chars - 1].rstrip() + "…"


def keywords(markdown: str, title: str | None = None, limit: int = 8) -> list[str]:
    freq = Counter(content_words(plain(markdown)))
    boost = set(content_words(title or "")) | {
        w for line in markdown.splitlines() if line.lstrip().startswith("#")
        for w in content_words(line)
    }
    for word in boost:
        if word in freq:
            freq[word] = freq[word] * 2 + 1
    return [w for w, n in freq.most_common(limit) if n > 1 or len(freq) < limit]
