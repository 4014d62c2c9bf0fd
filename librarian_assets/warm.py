"""What a warm run pool may do before it forks run workers (see
:mod:`librarian.orchestration.warm_pool`).

Only pure-Python work: it runs the CPU stages once on a built-in page so that their lazy imports
(py3langid and its model, htmldate, justext, trafilatura's settings), compiled regular
expressions and lxml cleaners exist in the parent and are shared by every worker. It creates no
thread, file lock or connection: no ONNX session (native thread pool), no tokenizer use (Rust
thread pool), no fetcher, no store.
"""

from __future__ import annotations

import contextlib
import importlib

from librarian.content.chunking import chunk_markdown
from librarian.content.enrich import detect_language
from librarian.content.extract import extract_content
from librarian.content.fetch import FetchedResponse
from librarian.content.summarize import keywords, summarize

# Imported by runs on first use; importing them starts nothing. (onnxruntime is left out: its
# import starts a thread.)
LAZY_MODULES = ("tokenizers", "qdrant_edge", "minio", "pypdf")

_PARAGRAPH = ("Librarian keeps a searchable copy of each page it is given: the fetcher reads it, "
              "the extractor keeps the main text, and the enrichment stage writes a summary, "
              "keywords and a quality tier before the page is chunked and stored. ")
_PAGE = (
    "<html lang='en'><head><title>Warm-up page</title><meta name='author' content='Librarian'>"
    "<meta property='article:published_time' content='2026-01-02'></head><body><nav><a href='/'>"
    "Home</a></nav><article><h1>Warm-up page</h1>"
    + "".join(f"<h2>Part {i}</h2><p>{_PARAGRAPH * 3}</p>" for i in range(4))
    + "</article><footer>Footer</footer></body></html>").encode()


def warm_up() -> None:
    for name in LAZY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    doc = extract_content(FetchedResponse(
        # A real-looking host: the metadata stage loads the public-suffix list for it.
        url="https://www.example.com/warm-up", final_url="https://www.example.com/warm-up",
        status_code=200,
        content_type="text/html", charset="utf-8", body=_PAGE), pdf_max_pages=1)
    with contextlib.suppress(Exception):  # the public-suffix list, read on first use
        from tld import get_tld

        get_tld("https://www.example.com/", fail_silently=True)
    detect_language(doc.text)
    summarize(doc.markdown)
    keywords(doc.markdown, doc.title)
    chunk_markdown(doc.markdown)
