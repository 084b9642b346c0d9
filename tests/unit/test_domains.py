"""Domain normalisation: the natural key."""

import pytest

from shared.domains import InvalidDomain, normalize_domain


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme.com", "acme.com"),
        ("  ACME.com ", "acme.com"),
        ("https://www.acme.com/about?x=1", "acme.com"),
        ("http://shop.acme.co.uk:8080/", "shop.acme.co.uk"),
        ("acme.com.", "acme.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ],
)
def test_normalises_to_the_ascii_host(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "localhost",
        "acme",
        "x' or hnt_domain ne 'y",
        "acme.com'",
        "a b.com",
        "-acme.com",
        "acme-.com",
        "acme..com",
        "acme.c0m",
        "a*b.com",
        "a%2f.com",
        "user@acme.com",
        "a" * 64 + ".com",
        ("a" * 60 + ".") * 5 + "com",
        "acme.com\\x",
        42,
        None,
    ],
)
def test_rejects_what_is_not_a_domain(raw: object) -> None:
    with pytest.raises(InvalidDomain):
        normalize_domain(raw)


# --- IDNA 2008 / UTS #46 (issue 14) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # The stdlib codec (IDNA 2003) maps ß to ss: two companies would share one key.
        ("faß.de", "xn--fa-hia.de"),
        ("FASS.de", "fass.de"),
        # Final sigma is its own letter in IDNA 2008: these are two names.
        ("σοφος.gr", "xn--0xaajbq.gr"),
        ("σοφοσ.gr", "xn--0xaakcn.gr"),
        # UTS #46 folds full-width forms and the ideographic full stop before anything else.
        ("ＡＣＭＥ．com。", "acme.com"),
        # Characters UTS #46 marks "ignored" vanish, as they do in a browser's address bar.
        ("ac\u00adme.com", "acme.com"),
        # ZWJ after a virama is valid (CONTEXTJ) and kept: a different name from the one without it.
        ("\u0915\u094d\u200d\u0937.in", "xn--11b2ezcw70k.in"),
        ("\u0915\u094d\u0937.in", "xn--11b2ezc.in"),
        ("XN--FA-HIA.de", "xn--fa-hia.de"),
    ],
)
def test_idna_2008_with_the_uts46_mapping(raw: str, expected: str) -> None:
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "a\u200db.com",  # ZWJ outside its CONTEXTJ rule is refused, never silently dropped
        "a\u200cb.com",  # ZWNJ likewise
        "a\ud800.com",  # a lone surrogate
        "xn---bbk.com",  # a fake A-label (non-canonical Punycode)
        "xn--.com",
        "acme.com:８０",  # a full-width colon maps to ':' and is refused, not taken for a port
        "ａ＠acme.com",
        "acme.com\x00",
        "a" * 60 + "." + "b" * 60 + "." + "c" * 60 + "." + "d" * 8 + ".com",  # 193 characters
    ],
)
def test_rejects_what_idna_2008_rejects(raw: str) -> None:
    with pytest.raises(InvalidDomain):
        normalize_domain(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("www。dupwww.example", "dupwww.example"),
        ("ｗｗｗ.acme.com", "acme.com"),
        ("www.www.acme.com", "acme.com"),
        ("www.www.com", "www.com"),
        ("www.com", "www.com"),
    ],
)
def test_www_is_stripped_after_the_mapping_so_once_is_enough(raw: str, expected: str) -> None:
    once = normalize_domain(raw)
    assert once == expected
    assert normalize_domain(once) == once


def test_errors_never_echo_the_raw_input() -> None:
    with pytest.raises(InvalidDomain) as raised:
        normalize_domain("bad\ud800\x1b.com")
    assert str(raised.value).isascii() and "\x1b" not in str(raised.value)
    str(raised.value).encode("utf-8")


def test_a_192_character_domain_is_the_longest_key() -> None:
    domain = "a" * 63 + "." + "b" * 63 + "." + "c" * 60 + ".com"
    assert len(domain) == 192
    assert normalize_domain(domain) == domain
