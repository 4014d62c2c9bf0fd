
import pytest

from librarian.canonical_url import MAX_URL_LENGTH, canonicalize
from librarian.errors import InvalidURL


@pytest.mark.parametrize(("raw", "expected"), [
    ("HTTP://Example.COM:80/a/../b?utm_source=x&b=2&a=1#frag", "http://example.com/b?a=1&b=2"),
    ("https://example.com", "https://example.com/"),
    ("https://example.com:443/x/", "https://example.com/x/"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("https://bücher.example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"),
    ("https://example.com/a%20b?q=%7E", "https://example.com/a%20b?q=~"),
    ("https://example.com/p?fbclid=1&gclid=2&id=7", "https://example.com/p?id=7"),
    ("  https://example.com./path  ", "https://example.com/path"),
])
def test_equivalent_spellings_share_one_canonical_url(raw: str, expected: str) -> None:
    assert canonicalize(raw).url == expected


@pytest.mark.parametrize("raw", [
    "", "   ", "ftp://example.com/file", "file:///etc/passwd", "javascript:alert(1)",
    "data:text/html,hi", "https://user:pw@example.com/", "https://user@example.com/",
    "http:///nohost", "example.com/no-scheme", "https://exa mple.com/", "http://[::1/",
    "https://example.com/\x00", "https://ex..ample.com/",
])
def test_invalid_urls_are_refused_with_invalid_url(raw: str) -> None:
    with pytest.raises(InvalidURL) as info:
        canonicalize(raw)
    assert info.value.code == "invalid_url"


def test_overlong_url_is_refused() -> None:
    with pytest.raises(InvalidURL, match="longer than"):
        canonicalize("https://example.com/" + "a" * MAX_URL_LENGTH)


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://e.com/a%2Fb", "https://e.com/a%2Fb"),         # an escaped slash is not a slash
    ("https://e.com/%7euser", "https://e.com/~user"),        # unreserved escapes are decoded
    ("https://e.com/a%3f", "https://e.com/a%3F"),            # others are upper-cased
    ("https://e.com/?q=%ff&a=%e9", "https://e.com/?a=%E9&q=%FF"),  # non-UTF-8 query survives
    ("https://e.com/?q=a+b&q=c", "https://e.com/?q=a+b&q=c"),
    ("https://e.com/?utm_source=x", "https://e.com/"),
])
def test_normalisation_never_changes_what_the_url_points_to(raw: str, expected: str) -> None:
    assert canonicalize(raw).url == expected


def test_lone_surrogates_and_urls_too_long_once_encoded_are_invalid() -> None:
    with pytest.raises(InvalidURL, match="Unicode"):
        canonicalize("http://a.com/\udcff")
    with pytest.raises(InvalidURL, match="once encoded"):
        canonicalize("https://example.com/" + "é" * 1500)


@pytest.mark.parametrize("raw", ["http://2130706433/", "http://0x7f.0.0.1/", "http://0177.0.0.1/",
                                 "http://127.1/", "http://0x7f000001/"])
def test_numeric_spellings_of_an_ipv4_address_canonicalise_to_dotted_quad(raw: str) -> None:
    assert canonicalize(raw).url == "http://127.0.0.1/"


def test_an_ipv4_number_out_of_range_is_invalid() -> None:
    with pytest.raises(InvalidURL):
        canonicalize("http://99999999999/")
