"""Quality score, tier and page-type guess against the corpus' page types.

    .venv/bin/python bench/page_quality.py [--corpus DIR]

For every page of the corpus (default ``../shared/corpus/wcxb-dev``; WCXB benchmark by Murrough
Foley, CC-BY-4.0): extract as the pipeline does, score with the quality rubric, guess the page
type. Prints, per true page type, the mean and quartiles of the score, the share of each tier,
and how often the page-type guess is right. Articles and documentation should score clearly
above listings and collections.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from librarian.content.html.extract import extract_html
from librarian.content.quality import assess

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "wcxb-dev"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.corpus / "truth.jsonl").read_text().split("\n")
            if line.strip()]
    scores: dict[str, list[float]] = defaultdict(list)
    tiers: dict[str, Counter[str]] = defaultdict(Counter)
    guessed: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        html = gzip.decompress((args.corpus / "pages" / f"{row['id']}.html.gz").read_bytes())
        found = extract_html(html, url=row.get("url"), declared_charset=None)
        kind = row.get("page_type") or "all"
        if found is None:
            scores[kind].append(0.0)
            tiers[kind]["none"] += 1
            continue
        q = assess(found.markdown, html_text_ratio=found.html_text_ratio, title=found.title,
                   author=found.author, date=found.date, description=found.description)
        scores[kind].append(q.score)
        tiers[kind][q.tier] += 1
        guessed[kind][found.page_type] += 1
    print(f"{'page type':14} {'n':>4} {'mean':>5} {'q1':>5} {'median':>6} {'q3':>5} "
          f"{'A':>5} {'B':>5} {'C':>5} {'type guessed right':>19}")
    for kind in sorted(scores, key=lambda k: -statistics.fmean(scores[k])):
        s = sorted(scores[kind])
        n = len(s)
        q1, med, q3 = s[n // 4], statistics.median(s), s[(3 * n) // 4]
        share = {t: tiers[kind][t] / n for t in "ABC"}
        right = guessed[kind][kind] / max(1, sum(guessed[kind].values()))
        print(f"{kind:14} {n:4d} {statistics.fmean(s):5.2f} {q1:5.2f} {med:6.2f} {q3:5.2f} "
              f"{share['A']:5.0%} {share['B']:5.0%} {share['C']:5.0%} {right:19.0%}")


if __name__ == "__main__":
    main()
