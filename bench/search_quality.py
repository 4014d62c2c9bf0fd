"""Search quality on the extraction corpus: recall@5 and MRR for dense, sparse and hybrid.

    .venv/bin/python bench/search_quality.py [--corpus DIR] [--limit N]
                                             [--models packaged,quantized]

Every page of the corpus (default ``../shared/corpus/wcxb-dev``; WCXB benchmark by Murrough
Foley, CC-BY-4.0) is extracted, chunked, embedded and indexed exactly as the pipeline does, in an
embedded vector store. Two query sets, each query with one right answer (its page):

* title: the page's title from the truth file;
* held-out sentence: one sentence of 12+ words taken out of the page's text before indexing
  (so the query never appears verbatim in the index).

Results are grouped by item as the API does; recall@5 is the share of queries whose page is
among the first five items, MRR the mean of 1/rank (0 past rank 10).
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from librarian.content.chunking import Chunk, chunk_markdown
from librarian.content.html.extract import extract_html
from librarian.embedding.model import Embedder
from librarian.embedding.sparse import document_vector, query_vector
from librarian.storage.vectors import ChunkPoint, VectorStore

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "wcxb-dev"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
MODEL = "bench-minilm"


def held_out_sentence(text: str) -> str | None:
    sentences = [s.strip() for s in _SENTENCE.split(text) if 12 <= len(s.split()) <= 40]
    return sentences[len(sentences) // 2] if sentences else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--models", default="packaged,quantized",
                        help="packaged (the int8 file as shipped), quantized (its dq8 copy)")
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.corpus / "truth.jsonl").read_text().split("\n")
            if line.strip()][: args.limit]
    cache = Path(tempfile.mkdtemp(prefix="librarian-onnx-"))
    embedders = {kind: Embedder(name=MODEL, threads=1, cache_dir=cache,
                                quantize=kind == "quantized")
                 for kind in args.models.split(",")}
    store = VectorStore(path=Path(tempfile.mkdtemp(prefix="librarian-search-")))
    queries: dict[str, list[tuple[str, str]]] = {"title": [], "held-out sentence": []}
    pages: list[tuple[dict[str, str], list[Chunk]]] = []
    for row in rows:
        html = gzip.decompress((args.corpus / "pages" / f"{row['id']}.html.gz").read_bytes())
        found = extract_html(html, url=row.get("url"), declared_charset=None)
        if found is None:
            continue
        markdown = found.markdown
        sentence = held_out_sentence(found.text)
        if sentence and sentence in markdown:
            markdown = markdown.replace(sentence, " ")
            queries["held-out sentence"].append((sentence, row["id"]))
        if row.get("title"):
            queries["title"].append((row["title"], row["id"]))
        chunks = chunk_markdown(markdown)
        if chunks:
            pages.append((row, chunks))
    chunk_total = sum(len(chunks) for _, chunks in pages)
    print(f"{len(pages)} pages, {chunk_total} chunks; one embedding thread\n")
    for kind, embedder in embedders.items():
        embedder.embed(["load the model before the clock starts"])
        cpu = 0.0
        for row, chunks in pages:
            texts = [" > ".join(c.heading_path) + "\n" + c.text if c.heading_path else c.text
                     for c in chunks]
            t = time.process_time()
            vectors = embedder.embed(texts)
            cpu += time.process_time() - t
            points = []
            for chunk, vector in zip(chunks, vectors, strict=True):
                indices, values = document_vector(" ".join([*chunk.heading_path, chunk.text]))
                points.append(ChunkPoint(chunk.index, chunk.text, list(chunk.heading_path),
                                         vector.tolist(), indices, values))
            store.upsert_version(item_id=row["id"], content_hash="v1", model=embedder.name,
                                 dimension=vectors.shape[1], chunks=points,
                                 payload={"url": row.get("url"),
                                          "page_type": row.get("page_type")})
        print(f"[{kind}] model {embedder.name}: {1000 * cpu / chunk_total:.1f} ms CPU per chunk")
        print(f"{'queries':20} {'n':>4} {'mode':8} {'recall@5':>9} {'MRR':>6} {'ms p50':>7}")
        for name, pairs in queries.items():
            for mode in ("dense", "sparse", "hybrid"):
                ranks, times = [], []
                for query, answer in pairs:
                    t = time.perf_counter()
                    dense = embedder.embed([query])[0].tolist() if mode != "sparse" else None
                    sparse = query_vector(query) if mode != "dense" else None
                    hits = store.search(dense=dense, sparse=sparse, model=embedder.name,
                                        dimension=embedder.dimension, limit=40, mode=mode)
                    times.append((time.perf_counter() - t) * 1000)
                    order = list(dict.fromkeys(h["item_id"] for h in hits))[:10]
                    ranks.append(order.index(answer) + 1 if answer in order else None)
                recall = sum(1 for r in ranks if r is not None and r <= 5) / len(ranks)
                mrr = statistics.fmean(1 / r if r else 0.0 for r in ranks)
                print(f"{name:20} {len(pairs):4d} {mode:8} {recall:9.3f} {mrr:6.3f} "
                      f"{statistics.median(times):7.1f}")
        print()


if __name__ == "__main__":
    main()
