"""Main-content extraction quality: Librarian's extractor against trafilatura's defaults.

    .venv/bin/python bench/extract_quality.py [--corpus DIR] [--limit N]

The corpus is a folder with ``pages/<id>.html.gz`` and ``truth.jsonl`` (``id``, ``text``; and,
where present, ``page_type``, ``title``, ``author``, ``date``, ``with``, ``without``). The
default is ``../shared/corpus/wcxb-dev`` (WCXB benchmark by Murrough Foley, CC-BY-4.0).

Metric (the article-extraction-benchmark one): tokens ``re.findall(r"\\w+", text)``, units 4-gram
shingles counted as a multiset; precision is the mean per-page precision over pages with a
non-empty output, recall the mean per-page recall over all pages (empty output: 0); F1 their
harmonic mean. Also: share of ``with`` snippets found and of ``without`` snippets absent, per page
type; milliseconds per page (median, p95); title/author/date accuracy where the truth has them.
The last line printed is ``librarian F1=<x> trafilatura F1=<y>``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trafilatura

from librarian.content.html.extract import extract_html

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "wcxb-dev"
_TOKEN = re.compile(r"\w+")


@dataclass
class Output:
    text: str
    title: str | None = None
    author: str | None = None
    date: str | None = None


@dataclass
class Score:
    precision: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    with_hits: list[bool] = field(default_factory=list)
    without_ok: list[bool] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    meta: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))

    def f1(self) -> float:
        p = statistics.fmean(self.precision) if self.precision else 0.0
        r = statistics.fmean(self.recall) if self.recall else 0.0
        return 2 * p * r / (p + r) if p + r else 0.0


def shingles(text: str, n: int = 4) -> Counter[tuple[str, ...]]:
    tokens = _TOKEN.findall(text)
    return Counter(tuple(tokens[i:i + n]) for i in range(max(0, len(tokens) - n + 1)))


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def score_page(score: Score, output: Output, truth: dict[str, Any], ms: float) -> None:
    got, want = shingles(output.text or ""), shingles(truth["text"] or "")
    overlap = sum((got & want).values())
    if got:
        score.precision.append(overlap / sum(got.values()))
    score.recall.append(overlap / sum(want.values()) if want else (1.0 if not got else 0.0))
    text = normalise(output.text or "")
    score.with_hits.extend(normalise(s) in text for s in truth.get("with") or [])
    score.without_ok.extend(normalise(s) not in text for s in truth.get("without") or [])
    score.ms.append(ms)
    for key in ("title", "author", "date"):
        if truth.get(key):
            score.meta[key].append(_meta_match(key, getattr(output, key), truth[key]))


def _meta_match(key: str, got: str | None, want: str) -> bool:
    if not got:
        return False
    if key == "date":
        return got[:10] == want[:10]
    g, w = normalise(got), normalise(want)
    return g == w if key == "title" else (g == w or w in g or g in w)


def librarian(html: bytes, url: str | None) -> Output:
    found = extract_html(html, url=url, declared_charset=None)
    if found is None:
        return Output("")
    return Output(found.text, found.title, found.author, found.date)


def trafilatura_default(html: bytes, url: str | None) -> Output:
    return Output(trafilatura.extract(html, url=url) or "")


def trafilatura_metadata(html: bytes, url: str | None) -> Output:
    meta = trafilatura.extract_metadata(html, default_url=url)
    return Output("", meta.title if meta else None, meta.author if meta else None,
                  meta.date if meta else None)


def run(corpus: Path, limit: int | None) -> None:
    # split("\n"), not splitlines(): the texts hold U+2028 and other Unicode line breaks.
    rows = [json.loads(line) for line in (corpus / "truth.jsonl").read_text().split("\n")
            if line.strip()]
    rows = rows[:limit] if limit else rows
    extractors: dict[str, Callable[[bytes, str | None], Output]] = {
        "librarian": librarian, "trafilatura": trafilatura_default}
    scores: dict[str, dict[str, Score]] = {name: defaultdict(Score) for name in extractors}
    traf_meta: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        html = gzip.decompress((corpus / "pages" / f"{row['id']}.html.gz").read_bytes())
        kind = row.get("page_type") or "all"
        for name, extract in extractors.items():
            started = time.perf_counter()
            output = extract(html, row.get("url"))
            ms = (time.perf_counter() - started) * 1000
            for bucket in (kind, "ALL"):
                score_page(scores[name][bucket], output, row, ms)
        meta = trafilatura_metadata(html, row.get("url"))
        for key in ("title", "author", "date"):
            if row.get(key):
                traf_meta[key].append(_meta_match(key, getattr(meta, key), row[key]))
    kinds = [*sorted(k for k in scores["librarian"] if k != "ALL"), "ALL"]
    print(f"{'extractor':12} {'type':14} {'pages':>5} {'F1':>6} {'prec':>6} {'recall':>6} "
          f"{'with':>6} {'w/out':>6} {'ms p50':>7} {'ms p95':>7}")
    for kind in kinds:
        for name in extractors:
            s = scores[name][kind]
            p95 = sorted(s.ms)[int(0.95 * (len(s.ms) - 1))]
            print(f"{name:12} {kind:14} {len(s.recall):5d} {s.f1():6.3f} "
                  f"{statistics.fmean(s.precision) if s.precision else 0:6.3f} "
                  f"{statistics.fmean(s.recall):6.3f} {_rate(s.with_hits):>6} "
                  f"{_rate(s.without_ok):>6} {statistics.median(s.ms):7.1f} {p95:7.1f}")
    print()
    ours = scores["librarian"]["ALL"].meta
    print(f"{'metadata':12} {'librarian':>10} {'trafilatura':>12} {'pages':>6}")
    for key in ("title", "author", "date"):
        print(f"{key:12} {_rate(ours.get(key, [])):>10} {_rate(traf_meta[key]):>12} "
              f"{len(traf_meta[key]):6d}")
    print(f"librarian F1={scores['librarian']['ALL'].f1():.3f} "
          f"trafilatura F1={scores['trafilatura']['ALL'].f1():.3f}")


def _rate(values: list[bool]) -> str:
    return f"{sum(values) / len(values):.3f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    run(args.corpus, args.limit)


if __name__ == "__main__":
    main()
