import pytest

from librarian.content.decoding import decode_body
from librarian.content.extract import extract_content
from librarian.content.fetch import FetchedResponse
from librarian.errors import ContentError
from tests.support.pages import ARTICLE, TEXT


def _response(body: bytes, ctype: str, charset: str | None = None) -> FetchedResponse:
    return FetchedResponse(url="http://127.0.0.1/x", final_url="http://127.0.0.1/x",
                           status_code=200, content_type=ctype, charset=charset, body=body)


def test_html_main_content_drops_navigation_and_keeps_structure() -> None:
    doc = extract_content(_response(ARTICLE.encode(), "text/html", "utf-8"), pdf_max_pages=300)
    assert "Cherry tomatoes are forgiving" in doc.text
    assert "Copyright 2026" not in doc.markdown
    assert "## Choosing a variety" in doc.markdown or "Choosing a variety" in doc.markdown
    assert doc.title == "Growing Tomatoes at Home"
    assert doc.author == "Jane Roe"
    assert doc.html_text_ratio is not None and 0 < doc.html_text_ratio < 1


def test_plain_text_is_kept_as_is_with_first_line_as_title() -> None:
    doc = extract_content(_response(TEXT.encode(), "text/plain"), pdf_max_pages=300)
    assert doc.title == "Notes on sourdough baking"
    assert "cold fermentation" in doc.text


@pytest.mark.parametrize("ctype", ["application/octet-stream", "image/png", "application/zip"])
def test_other_content_types_are_unsupported(ctype: str) -> None:
    with pytest.raises(ContentError) as info:
        extract_content(_response(b"\x00\x01binary", ctype), pdf_max_pages=300)
    assert info.value.code == "unsupported_type" and info.value.stage == "extract"


def test_page_without_readable_content_is_empty_content() -> None:
    shell = (b"<html><head><title>App</title></head><body><div id=root></div>"
             b"<script>x()</script></body></html>")
    with pytest.raises(ContentError) as info:
        extract_content(_response(shell, "text/html"), pdf_max_pages=300)
    assert info.value.code == "empty_content"


def test_wrong_or_missing_charset_is_recovered() -> None:
    text = "Crème brûlée et pâtisserie française, déjà servie à la fenêtre."
    latin = text.encode("latin-1")
    assert decode_body(latin, None) == text  # not UTF-8: detected
    assert decode_body(latin, "utf-8") == text  # declared wrong: falls back
    meta = b'<meta charset="iso-8859-1">' + latin
    assert decode_body(meta, None).endswith(text)


def _guess(html: bytes, markdown: str) -> str:
    from lxml.html import document_fromstring

    from librarian.content.page_type import classify, og_type, schema_types

    tree = document_fromstring(html)
    return classify(schema_types(tree), og_type(tree), html, markdown)


def test_page_types_come_from_the_pages_own_markup() -> None:
    product = (b'<script type="application/ld+json">{"@type": "Product", "name": "Kettle"}'
               b"</script><button>Add to cart</button>")
    assert _guess(product, "A kettle. 1.7 litres.") == "product"
    forum = b"".join(b'<div class="reply"><span class="username">u</span></div>'
                     for _ in range(6))
    assert _guess(forum, "Question and answers") == "forum"
    docs = b"<pre>code</pre>" * 4
    assert _guess(docs, "## Install\n\nRun the tool.") == "documentation"
    listing = "\n".join(f"- [Item {i}](/item/{i})" for i in range(30))
    assert _guess(b"<html></html>", listing) == "listing"
    prose = "\n\n".join(["A long paragraph of prose about gardening and tomatoes. " * 6] * 8)
    assert _guess(b'<meta property="og:type" content="article">', prose) == "article"
    doc = extract_content(_response(ARTICLE.encode(), "text/html"), pdf_max_pages=300)
    assert doc.page_type == "article"
