from librarian.content.chunking import chunk_markdown, split_blocks
from librarian.content.quality import assess, tier_for
from librarian.content.summarize import keywords, summarize

PARA = ("Tomatoes need sun, water and rich soil to grow well in a garden, and gardeners "
        "who mulch and prune them early in the season usually harvest far more fruit. ")


def _article(paragraphs: int) -> str:
    parts = ["# Growing tomatoes"]
    for i in range(paragraphs):
        if i % 3 == 0:
            parts.append(f"## Section {i}")
        parts.append(PARA * 3)
    return "\n\n".join(parts)


def test_a_long_structured_article_scores_above_a_link_listing() -> None:
    article = assess(_article(12), html_text_ratio=0.3, title="T", author="A", date="2025",
                     description="D")
    listing = assess("\n".join(f"[Item {i}](/p/{i})" for i in range(60)), html_text_ratio=0.03,
                     title="Shop", author=None, date=None, description=None)
    assert article.score > listing.score + 0.3
    assert article.tier == "A" and listing.tier == "C"
    assert 0 <= listing.score <= 1 and 0 <= article.score <= 1


def test_tier_boundaries() -> None:
    assert [tier_for(s) for s in (0.9, 0.75, 0.74, 0.5, 0.49, 0.0)] == list("AABBCC")


def test_chunks_follow_headings_and_never_split_code_fences() -> None:
    md = ("# Guide\n\nIntro text here.\n\n## Install\n\n```bash\npip install x\n\necho done\n```"
          "\n\n## Use\n\n" + PARA * 30)
    blocks = split_blocks(md)
    assert ("```bash\npip install x\n\necho done\n```", ("Guide", "Install")) in blocks
    chunks = chunk_markdown(md, target_words=60, overlap_words=10)
    assert chunks[0].heading_path == ("Guide",)
    assert any("pip install x" in c.text and "echo done" in c.text for c in chunks)
    use = [c for c in chunks if c.heading_path == ("Guide", "Use")]
    assert len(use) > 3
    assert all(len(c.text.split()) <= 60 + 10 for c in use)
    # Consecutive chunks of one section overlap.
    assert use[1].text.split()[:5] == use[0].text.split()[-10:][:5]
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_summary_is_sentences_of_the_document_in_order() -> None:
    text = ("Tomatoes love sun and warm soil in the summer garden. "
            "My neighbour owns a red bicycle that squeaks. "
            "Tomatoes need regular watering and rich soil to thrive well. "
            "Soil quality decides how tomatoes grow in any garden.")
    summary = summarize(text, max_sentences=2)
    assert "bicycle" not in summary
    sentences = [s for s in text.split(". ") if s.rstrip(".") in summary]
    assert len(sentences) == 2
    assert summary.index("Tomatoes") == 0


def test_keywords_favour_frequent_title_words() -> None:
    words = keywords(_article(4), title="Growing tomatoes")
    assert words[0] == "tomatoes"
    assert "the" not in words
