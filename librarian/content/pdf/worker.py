"""Child process of :mod:`librarian.content.pdf.extract`: PDF bytes on stdin, JSON on stdout.

Usage: ``python -m librarian.content.pdf.worker MAX_PAGES < file.pdf``
"""

from __future__ import annotations

import json
import re
import sys

import pypdfium2 as pdfium

from librarian.errors import ErrorCode


def _date(raw: str | None) -> str | None:
    # PDF dates look like D:20240131120000+01'00'
    match = re.match(r"^D:(\d{4})(\d{2})?(\d{2})?", raw or "")
    if not match:
        return None
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    return f"{year}-{month}-{day}"


def main() -> None:
    max_pages = int(sys.argv[1])
    data = sys.stdin.buffer.read()
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        encrypted = "password" in str(exc).lower()
        print(json.dumps({
            "error": (ErrorCode.ENCRYPTED_DOCUMENT if encrypted
                      else ErrorCode.CORRUPT_DOCUMENT).value,
            "message": ("the PDF is password-protected" if encrypted
                        else f"the PDF is damaged or not a PDF: {exc}")}))
        return
    meta = pdf.get_metadata_dict()
    pages = []
    for index in range(min(len(pdf), max_pages)):
        page = pdf[index]
        textpage = page.get_textpage()
        pages.append(textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n"))
        textpage.close()
        page.close()
    print(json.dumps({"pages": pages, "page_count": len(pdf),
                      "title": meta.get("Title") or None, "author": meta.get("Author") or None,
                      "date": _date(meta.get("CreationDate"))}))
    pdf.close()


if __name__ == "__main__":
    main()
