"""Text of a PDF, page by page, parsed in a child process that cannot hang or exhaust the run.

PDFs from the web can be hostile (decompression bombs, endless object graphs, parser bugs).
Parsing happens in a separate interpreter with a CPU-time limit, an address-space limit and a
wall-clock timeout, so the worst a PDF can do is fail its own job with a clear code. Only the
first ``max_pages`` pages are read; the result says when the document was longer.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from dataclasses import dataclass

from librarian.errors import ContentError, ErrorCode


@dataclass(frozen=True)
class PdfText:
    pages: list[str]
    page_count: int
    title: str | None
    author: str | None
    date: str | None

    @property
    def truncated(self) -> bool:
        return self.page_count > len(self.pages)


def extract_pdf(body: bytes, *, url: str | None = None, max_pages: int = 300,
                timeout: float = 30.0, memory_mb: int = 1024) -> PdfText:
    def limits() -> None:  # runs in the child before exec
        cpu = int(timeout) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        size = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    try:
        done = subprocess.run(
            [sys.executable, "-m", "librarian.content.pdf.worker", str(max_pages)],
            input=body, capture_output=True, timeout=timeout, preexec_fn=limits, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ContentError(ErrorCode.CORRUPT_DOCUMENT,
                           f"the PDF took longer than {timeout:.0f} s to read", url=url) from exc
    if done.returncode != 0 or not done.stdout:
        raise ContentError(ErrorCode.CORRUPT_DOCUMENT,
                           "the PDF could not be read (the parser ran out of time or memory)",
                           url=url)
    result = json.loads(done.stdout)
    if "error" in result:
        raise ContentError(result["error"], result["message"], url=url)
    return PdfText(pages=result["pages"], page_count=result["page_count"],
                   title=result.get("title"), author=result.get("author"),
                   date=result.get("date"))
