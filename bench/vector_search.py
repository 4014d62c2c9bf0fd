"""Vector search latency of the embedded engines at library sizes: Qdrant Edge vs qdrant-client.

Builds embedded stores of synthetic chunks shaped like the library's (384-dim normalized vectors
clustered by topic; ~40-term sparse BM25 vectors drawn from a Zipf vocabulary, weighted as
:mod:`librarian.embedding.sparse` weighs them; ~180-word texts and the usual payload, 10
chunks per item)
and reports, per engine and size:

* build: chunks/s written in bulk (1,000 chunks per ``upsert_versions`` call), including the
  HNSW indexing that edge writes do as they go ("indexing s": its share of the build);
* item upsert: one 10-chunk ``upsert_version`` call, as the load op makes it (lock, open,
  write, flush, optimize check, close);
* open: lock + load + close of the store with nothing done in between (paid by every call);
* dense / sparse / hybrid / hybrid+filter: p50/p95 of the query alone on an open store;
* search(): p50/p95 of a whole ``VectorStore.search`` hybrid call, open and close included.

qdrant-client's local mode is the baseline at 10k only by default: it holds every vector in
Python and reloads the whole collection on each open, so 50k takes minutes to build and about
5 s per call (pass ``--local-sizes 10000,50000`` to measure it anyway).

    .venv/bin/python bench/vector_search.py [--sizes 10000,50000] [--local-sizes 10000]
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from librarian.embedding.sparse import AVERAGE_WORDS, K1, B, term_id
from librarian.storage.vectors import (
    ChunkPoint,
    VectorStore,
    Version,
    client_query,
    collection_name,
    edge_query,
    search_request,
)
from librarian.storage.vectors.edge import EdgeEngine

MODEL = "bench-minilm"
DIM = 384
VOCABULARY = 50_000
TOPICS = 300
WORDS_PER_CHUNK = 180
TERMS_PER_CHUNK = 40
CHUNKS_PER_ITEM = 10
FILTER = {"language": "en", "tier": ["A", "B"]}


class Corpus:
    def __init__(self, size: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        centroids = rng.normal(size=(TOPICS, DIM)).astype(np.float32)
        topic = rng.integers(0, TOPICS, size=size)
        vectors = centroids[topic] + rng.normal(scale=1.2, size=(size, DIM)).astype(np.float32)
        self.vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        ranks = np.arange(1, VOCABULARY + 1)
        zipf = 1.0 / ranks ** 1.07
        zipf[:30] = 0.0  # the most frequent words are stopwords: never indexed
        self.words = rng.choice(VOCABULARY, size=(size, WORDS_PER_CHUNK), p=zipf / zipf.sum())
        self.term_ids = [term_id(f"w{i}") for i in range(VOCABULARY)]
        self.size = size

    def sparse(self, row: int) -> tuple[list[int], list[float]]:
        words, counts = np.unique(self.words[row], return_counts=True)
        keep = np.argsort(-counts, kind="stable")[:TERMS_PER_CHUNK]
        norm = K1 * (1 - B + B * WORDS_PER_CHUNK / AVERAGE_WORDS)
        weights = {self.term_ids[int(words[k])]: float(counts[k]) * (K1 + 1)
                   / (float(counts[k]) + norm) for k in keep}
        indices = sorted(weights)
        return indices, [round(weights[i], 5) for i in indices]

    def chunk(self, row: int) -> ChunkPoint:
        text = " ".join(f"w{w}" for w in self.words[row])
        return ChunkPoint(row % CHUNKS_PER_ITEM, text, ["Guide", f"Part {row % 7}"],
                          self.vectors[row].tolist(), *self.sparse(row))

    def version(self, item: int, rows: range, tag: str = "") -> Version:
        return Version(
            f"item-{item}{tag}", "v1", [self.chunk(r) for r in rows],
            {"url": f"https://site{item % 97}.example/page/{item}", "title": f"Page {item}",
             "tier": "ABCD"[item % 4], "language": ("en", "en", "de", "fr")[item // 4 % 4],
             "domain": f"site{item % 97}.example", "page_type": "article"})

    def queries(self, count: int) -> Iterator[tuple[list[float], tuple[list[int], list[float]]]]:
        for row in self.rng.integers(0, self.size, size=count):
            noisy = self.vectors[row] + self.rng.normal(scale=0.03, size=DIM)
            terms = self.sparse(int(row))[0]
            picked = sorted(self.rng.choice(terms, size=min(4, len(terms)), replace=False))
            yield ((noisy / np.linalg.norm(noisy)).tolist(),
                   ([int(t) for t in picked], [1.0] * len(picked)))


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return f"{statistics.median(ordered) * 1e3:.1f}/{p95 * 1e3:.1f}"


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    started = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - started


@contextmanager
def open_engine(store: VectorStore) -> Iterator[Callable[[Any], list[dict[str, Any]]]]:
    """The store's engine held open, as a function running one search request."""
    if isinstance(store.engine, EdgeEngine):
        with store.engine.shard(store.collection(MODEL, DIM), create=False) as shard:
            assert shard is not None
            yield lambda request: edge_query(shard, request)
    else:
        with store.client() as qc:
            name = collection_name(MODEL, DIM)
            yield lambda request: client_query(qc, name, request)


def open_cost(store: VectorStore) -> float:
    engine = store.engine
    if isinstance(engine, EdgeEngine):
        def cycle() -> None:
            with engine.shard(store.collection(MODEL, DIM), create=False):
                pass
    else:
        def cycle() -> None:
            with store.client() as qc:
                qc.collection_exists(collection_name(MODEL, DIM))
    return statistics.median(timed(cycle) for _ in range(7))


class IndexingTime(logging.Handler):
    """Sums the "optimized in N s" records the edge writes log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if "optimized" in record.msg and isinstance(record.args, tuple):
            self.seconds += float(str(record.args[-1]))


def run(engine: str, corpus: Corpus, size: int, queries: int, calls: int, root: Path
        ) -> dict[str, str]:
    store = VectorStore(path=root / f"{engine}-{size}", engine=engine)  # type: ignore[arg-type]
    items = size // CHUNKS_PER_ITEM
    built = 0.0
    indexing = IndexingTime()
    logger = logging.getLogger("librarian.storage.vectors")
    logger.setLevel(logging.INFO)
    logger.addHandler(indexing)
    per_call = 100  # items: 1,000 chunks per write
    for first in range(0, items, per_call):
        versions = [corpus.version(i, range(i * CHUNKS_PER_ITEM, (i + 1) * CHUNKS_PER_ITEM))
                    for i in range(first, min(items, first + per_call))]
        built += timed(store.upsert_versions, versions, model=MODEL, dimension=DIM)
    logger.removeHandler(indexing)
    row = {"engine": "qdrant-edge" if engine == "edge" else "client local", "chunks": str(size),
           "build chunks/s": f"{size / built:,.0f}",
           "indexing s": f"{indexing.seconds:.1f}" if engine == "edge" else "-"}
    upserts = [timed(store.upsert_versions,
                     [corpus.version(items + i, range(i * CHUNKS_PER_ITEM,
                                                      (i + 1) * CHUNKS_PER_ITEM), "-new")],
                     model=MODEL, dimension=DIM) for i in range(min(calls, 20))]
    row["item upsert ms"] = f"{statistics.median(upserts) * 1e3:.0f}"
    row["open ms"] = f"{open_cost(store) * 1e3:.0f}"
    asked = list(corpus.queries(queries))
    with open_engine(store) as query:
        for mode in ("dense", "sparse", "hybrid", "hybrid+filter"):
            samples = []
            for dense, sparse in asked:
                request = search_request(
                    dense=dense, sparse=sparse, dimension=DIM, limit=10,
                    mode="hybrid" if mode == "hybrid+filter" else mode,  # type: ignore[arg-type]
                    filters=FILTER if mode == "hybrid+filter" else None)
                samples.append(timed(query, request))
            row[f"{mode} ms"] = percentiles(samples)
    searches = [timed(store.search, dense=dense, sparse=sparse, model=MODEL, dimension=DIM,
                      limit=10) for dense, sparse in asked[:calls]]
    row["search() ms"] = percentiles(searches)
    if engine == "edge":
        # As the API runs it: the shard stays open between searches arriving back to back.
        held = VectorStore(path=root / f"{engine}-{size}", engine="edge", hold_seconds=0.5)
        samples = [timed(held.search, dense=dense, sparse=sparse, model=MODEL, dimension=DIM,
                         limit=10) for dense, sparse in asked[:calls]]
        held.release()
        row["held search() ms"] = percentiles(samples)
    else:
        row["held search() ms"] = "-"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--local-sizes", default="10000")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--calls", type=int, default=50, help="search() calls per store")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    local_sizes = [int(s) for s in args.local_sizes.split(",") if s]
    root = Path(tempfile.mkdtemp(prefix="vector-bench-"))
    rows = []
    try:
        corpus = Corpus(max(sizes + local_sizes))
        for size in sorted(set(sizes + local_sizes)):
            for engine in ("edge", "local"):
                if size in (sizes if engine == "edge" else local_sizes):
                    calls = args.calls if engine == "edge" else min(args.calls, 10)
                    print(f"{engine} {size} ...", file=sys.stderr, flush=True)
                    rows.append(run(engine, corpus, size, args.queries, calls, root))
                    shutil.rmtree(root / f"{engine}-{size}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    columns = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(r[c].ljust(w) for c, w in zip(columns, widths, strict=True)))
    print(f"\nlatencies p50/p95 in ms; {args.queries} queries per mode on an open store;"
          f" search() = one whole VectorStore.search call (hybrid); filter = {FILTER}")
    if 50_000 in sizes and 50_000 not in local_sizes:
        print("client local at 50k skipped: see the module docstring")


if __name__ == "__main__":
    main()
