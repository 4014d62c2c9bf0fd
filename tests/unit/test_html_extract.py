"""Main-content extraction of HTML pages: Markdown kept, chrome dropped, titles, page kinds."""

from __future__ import annotations

import lxml.html
from lxml import etree
from trafilatura.utils import load_html

from librarian.content.html.candidates import (
    Candidate,
    fragment_to_markdown,
    markdown_to_text,
    parse_html,
)
from librarian.content.html.extract import choose, extract_html
from librarian.content.html.metadata import choose_title, page_metadata, strip_site_suffix
from librarian.content.page_type import is_single_product, schema_types

_PROSE = ("The committee met on a wet Tuesday to weigh the proposal in detail, and every member "
          "brought a written opinion on the costs, the schedule and the risks involved. ")

NAV = """<header><nav><ul><li><a href="/">Home</a></li><li><a href="/shop">Shop our catalogue</a>
</li><li><a href="/about">About the company</a></li></ul></nav></header>"""
FOOTER = """<footer><p>Copyright 2024 Example Widgets Incorporated. All rights reserved.</p>
<ul><li><a href="/privacy">Privacy policy</a></li><li><a href="/terms">Terms of sale</a></li>
</ul></footer>"""


def _page(body: str, head: str = "<title>A page</title>") -> bytes:
    return f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>{head}</head>" \
           f"<body>{body}</body></html>".encode()


ARTICLE = _page(f"""{NAV}<main><article>
<h1>Tuning the widget pipeline</h1>
<p>{_PROSE * 3}</p>
<h2>Installing the tools</h2>
<p>{_PROSE * 2} See the <a href="https://example.org/guide">installation guide</a> first.</p>
<ul><li>A recent compiler with full support for the standard library</li>
<li>The widget toolkit, version four or later, from the usual mirror</li>
<li>Patience, and a second terminal window for the build logs</li></ul>
<pre><code>pip install widget-toolkit
widget build --release</code></pre>
<p>{_PROSE * 2}</p>
<table><tr><th>Option</th><th>Default</th></tr><tr><td>threads</td><td>four</td></tr>
<tr><td>cache</td><td>enabled</td></tr></table>
<p>{_PROSE * 2}</p>
</article></main>{FOOTER}""", "<title>Tuning the widget pipeline | Widget Weekly</title>")


def test_article_keeps_structure_and_drops_chrome() -> None:
    found = extract_html(ARTICLE, url="https://example.org/a", declared_charset=None)
    assert found is not None
    md = found.markdown
    assert "Installing the tools" in md and "#" in md  # heading kept as a Markdown heading
    assert "- A recent compiler" in md  # list item
    assert "[installation guide](https://example.org/guide)" in md  # link with its target
    assert "widget build --release" in md  # code kept
    assert "threads" in md and "|" in md  # table as a Markdown table
    assert "Copyright 2024" not in md and "Privacy policy" not in md  # footer dropped
    assert "Shop our catalogue" not in md  # navigation dropped
    assert "https://example.org/guide" not in found.text  # text: the words, not the syntax
    assert "installation guide" in found.text
    assert found.title == "Tuning the widget pipeline"


def test_title_prefers_the_h1_that_agrees_with_the_metadata_title() -> None:
    tree = lxml.html.fromstring("<html><body><h1>Ten tips for tidy gardens</h1></body></html>")
    assert choose_title(tree, "Ten tips for tidy gardens | Garden Monthly") \
        == "Ten tips for tidy gardens"
    # an <h1> that is not the page's title (a logo, a section name) is ignored
    tree = lxml.html.fromstring("<html><body><h1>Garden Monthly</h1></body></html>")
    assert choose_title(tree, "Ten tips for tidy gardens - Garden Monthly") \
        == "Ten tips for tidy gardens"
    assert choose_title(lxml.html.fromstring("<p>x</p>"), None) is None


def test_strip_site_suffix_keeps_titles_that_only_contain_separators() -> None:
    assert strip_site_suffix("How to bake bread | The Kitchen") == "How to bake bread"
    assert strip_site_suffix("Python 3.13 - what is new") == "Python 3.13"
    assert strip_site_suffix("A long title - with a second clause that is much too long to "
                             "be a site name") == ("A long title - with a second clause that is "
                                                   "much too long to be a site name")
    assert strip_site_suffix("Plain title") == "Plain title"


def _card(n: int) -> str:
    return (f"<div class='card'><h3><a href='/course/{n}'>Course number {n} on data analysis"
            f"</a></h3><p>Learn the {n}th technique for cleaning and modelling data sets, with "
            f"exercises.</p></div>")


LISTING = _page(f"""{NAV}<main><h1>All data courses</h1>
<div class='grid'>{''.join(_card(n) for n in range(1, 13))}</div></main>{FOOTER}""")


def test_listing_keeps_its_link_heavy_cards() -> None:
    found = extract_html(LISTING, url="https://example.org/courses", declared_charset=None)
    assert found is not None
    for n in (1, 6, 12):
        assert f"Course number {n} on data analysis" in found.text
        assert f"Learn the {n}th technique" in found.text
    assert "Privacy policy" not in found.text


def _post(n: int, user: str) -> str:
    return (f"<div class='post'><div class='author'>{user}</div><div class='body'><p>Reply {n}: "
            f"I had the same trouble with the router firmware and rolling back to the previous "
            f"release fixed the dropped connections for me after a restart.</p></div></div>")


FORUM = _page(f"""{NAV}<main><h1>Router keeps dropping the connection</h1>
<div class='thread'>{''.join(_post(n, u) for n, u in enumerate(
    ["alice", "bob", "carol", "dave", "erin", "frank"], start=1))}</div></main>{FOOTER}""")


def test_forum_thread_keeps_every_post() -> None:
    found = extract_html(FORUM, url="https://example.org/t/1", declared_charset=None)
    assert found is not None
    for n in range(1, 7):
        assert f"Reply {n}:" in found.text


def test_single_product_detection_from_markup() -> None:
    product = lxml.html.fromstring(
        '<html><head><script type="application/ld+json">{"@type": "Product", "name": "Mug"}'
        '</script></head><body><button>Add to cart</button></body></html>')
    assert is_single_product(product, schema_types(product))
    category = lxml.html.fromstring(
        '<html><head><script type="application/ld+json">{"@type": ["CollectionPage"], '
        '"hasPart": [{"@type": "Product"}]}</script></head><body></body></html>')
    assert not is_single_product(category, schema_types(category))
    plain = lxml.html.fromstring("<html><body><p>Hello</p></body></html>")
    assert not is_single_product(plain, schema_types(plain))


def _candidate(name: str, text: str) -> Candidate:
    return Candidate(name, text, lambda: text)


def test_choose_takes_the_candidate_the_others_agree_with() -> None:
    content = "the quick brown fox jumps over the lazy dog near the quiet river bank today"
    stray = "subscribe to our newsletter for weekly offers and exclusive discount codes now"
    picked = choose([_candidate("trafilatura", stray), _candidate("resiliparse", content),
                     _candidate("readability", content + " and more")])
    assert picked.name == "resiliparse"
    # two candidates cannot outvote each other: the first one stays
    assert choose([_candidate("trafilatura", stray), _candidate("x", content)]).name \
        == "trafilatura"


def test_choose_lets_a_candidate_that_dwarfs_the_others_win() -> None:
    # the others each caught a fragment (the title) and agree on it: the large one found the page
    title = "course catalogue for the spring term"
    items = " ".join(f"course {n} covers topic {n} in depth with weekly exercises"
                     for n in range(40))
    picked = choose([_candidate("trafilatura", title), _candidate("resiliparse", title),
                     _candidate("repeated", f"{title} {items}"), _candidate("readability", title)])
    assert picked.name == "repeated"


def test_markdown_to_text_drops_syntax_not_words() -> None:
    md = "# Title\n\nSee **bold** and [the docs](https://x.org/d) and <u>under</u> \\_x\\_."
    assert markdown_to_text(md) == "# Title\n\nSee bold and the docs and under _x_."
    # link titles and parentheses in targets are syntax too
    md = ('[ABC](/wiki/ABC_(programming_language) "ABC (programming language)") and '
          '[x](<https://x.org/a b>)')
    assert markdown_to_text(md) == "ABC and x"


def test_parse_html_builds_the_tree_trafilatura_would() -> None:
    pages = [ARTICLE.decode(), "<p>only a fragment</p>", "<html><body><p>a\x01b\ufffe</p></body>",
             '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/'
             'xhtml1/DTD/xhtml1-strict.dtd">\n<html><body><p>caf\xe9</p></body></html>',
             "<html><head><meta charset='iso-8859-1'></head><body>\u00e9t\u00e9</body></html>"]
    for page in pages:
        ours, theirs = parse_html(page), load_html(page)
        assert (ours is None) == (theirs is None)
        if ours is not None and theirs is not None:
            assert etree.tostring(ours) == etree.tostring(theirs)


def test_repeated_paragraphs_are_kept_once() -> None:
    # the same block for wide and narrow screens: the reader sees it once
    blurb = ("Our widget keeps every reading in a single dashboard so that teams can follow the "
             "numbers that matter without switching between a dozen different tools each day.")
    page = _page(f"""<main><h1>The widget dashboard</h1><div class='desktop'><p>{blurb}</p></div>
<p>{_PROSE * 3}</p><div class='mobile'><p>{blurb}</p></div><p>{_PROSE * 2}</p></main>""")
    found = extract_html(page, url=None, declared_charset=None)
    assert found is not None
    assert found.markdown.count("single dashboard") == 1
    assert _PROSE.strip() in found.text


def test_author_rules_skip_dates_and_comment_sections() -> None:
    page = lxml.html.fromstring(
        "<html><body><div class='comments'><span class='author'>Some Commenter</span></div>"
        "<p class='byline'>By Jane Doe <time>12 May 2024</time></p><p>Text.</p></body></html>")
    assert page_metadata(page, None).author == "Jane Doe"


def test_fragment_to_markdown_renders_structure() -> None:
    md = fragment_to_markdown("<h2>Steps</h2><ol><li>one</li><li>two</li></ol>"
                              "<p>Go <a href='https://x.org'>there</a>.</p>")
    assert "## Steps" in md and "1. one" in md and "[there](https://x.org)" in md


def test_script_rendered_page_falls_back_to_its_description() -> None:
    page = _page("<div id='app'></div>",
                 "<title>Thread</title><meta name='description' content='I have nothing smart "
                 "in my apartment yet and want to start with a camera and a door sensor.'>")
    found = extract_html(page, url="https://example.org/t/2", declared_charset=None)
    assert found is not None
    assert found.text.startswith("I have nothing smart")
    assert extract_html(_page("<div id='app'></div>"), url=None, declared_charset=None) is None
