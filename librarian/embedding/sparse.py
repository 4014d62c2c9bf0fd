"""Sparse BM25 vectors for hybrid search, computed here so every vector backend gets the same.

Documents carry BM25's term-frequency part, ``tf·(k1+1) / (tf + k1·(1 − b + b·len/avglen))``;
the collection applies IDF at query time (Qdrant's IDF modifier), and a query carries 1.0 per
term. Term ids are a stable 32-bit hash of the lower-cased word, so no vocabulary is stored.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

K1 = 1.2
B = 0.75
AVERAGE_WORDS = 150.0  # chunks aim at ~180 words; the exact mean barely moves the ranking
_WORD = re.compile(r"[^\W_]{2,}", re.U)
STOPWORDS = frozenset("""
a an and are as at be but by for from has have he her his i if in into is it its me my no not
of on or our she so than that the their them then there these they this to too us was we were
what when where which who will with you your der die das und ist nicht mit von den dem des ein
eine zu auf für les des une pour dans sur est pas que qui avec el la los las del por con para
""".split())


def terms(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in STOPWORDS]


def term_id(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big")


def document_vector(text: str) -> tuple[list[int], list[float]]:
    counts = Counter(terms(text))
    length = sum(counts.values())
    if not length:
        return [], []
    norm = K1 * (1 - B + B * length / AVERAGE_WORDS)
    weights: dict[int, float] = {}
    for term, tf in counts.items():
        # Two terms may share a hash; their weights add up, which is what a merged term means.
        key = term_id(term)
        weights[key] = weights.get(key, 0.0) + tf * (K1 + 1) / (tf + norm)
    indices = sorted(weights)
    return indices, [round(weights[i], 5) for i in indices]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    indices = sorted({term_id(t) for t in terms(text)})
    return indices, [1.0] * len(indices)
