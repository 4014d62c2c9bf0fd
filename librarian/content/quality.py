"""Quality score (0–1) and tier of an extracted document.

Rubric — each part 0–1, weighted:

    length        0.30   words on a log scale: 50 words → 0, 2,000+ words → 1
    density       0.15   extracted text / page text (HTML); boilerplate-heavy pages score low
    structure     0.20   paragraphs and headings: prose organised into sections scores high
    metadata      0.15   title, author, date, description present
    boilerplate   0.20   1 − share of very short lines (menus, buttons, link lists)

Tiers: ``A`` (reference-grade) ≥ 0.75, ``B`` (standard) ≥ 0.50, ``C`` (low) below
(thresholds set so most articles and documentation pages of the evaluation corpus reach A and
most listings, collections and products do not: ``bench/page_quality.py``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

WEIGHTS = {"length": 0.30, "density": 0.15, "structure": 0.20, "metadata": 0.15,
           "boilerplate": 0.20}
TIER_A = 0.75
TIER_B = 0.50
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s", re.M)


@dataclass(frozen=True)
class Quality:
    score: float
    tier: str
    parts: dict[str, float]


def assess(markdown: str, *, html_text_ratio: float | None, title: str | None,
           author: str | None, date: str | None, description: str | None) -> Quality:
    words = len(markdown.split())
    length = _clamp(math.log(max(words, 1) / 50) / math.log(2000 / 50))
    density = 0.7 if html_text_ratio is None else _clamp(html_text_ratio / 0.25)
    paragraphs = [p for p in re.split(r"\n\s*\n", markdown) if len(p.split()) >= 20]
    headings = len(_HEADING.findall(markdown))
    structure = _clamp(min(len(paragraphs), 5) / 5 * 0.7 + min(headings, 3) / 3 * 0.3)
    metadata = sum(1 for v in (title, author, date, description) if v) / 4
    lines = [line for line in markdown.splitlines() if line.strip()]
    short = sum(1 for line in lines if len(line.split()) < 5 and not _HEADING.match(line))
    boilerplate = 1 - short / len(lines) if lines else 0.0
    parts = {"length": length, "density": density, "structure": structure,
             "metadata": metadata, "boilerplate": boilerplate}
    score = round(sum(WEIGHTS[k] * v for k, v in parts.items()), 4)
    return Quality(score=score, tier=tier_for(score),
                   parts={k: round(v, 3) for k, v in parts.items()})


def tier_for(score: float) -> str:
    if score >= TIER_A:
        return "A"
    if score >= TIER_B:
        return "B"
    return "C"


def _clamp(x: float) -> float:
    return max(0.0, min(1.0, x))
