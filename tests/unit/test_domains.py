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
