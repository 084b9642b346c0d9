"""Property: normalising a domain is idempotent, over generated hosts with odd dots, `www.`,
mixed case, full-width forms, IDNs, ports, schemes and paths."""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.domains import InvalidDomain, normalize_domain

DOTS = st.sampled_from([".", "。", "．", "｡"])
LETTERS = st.sampled_from(list("abcxyzABCXYZ0129-ßσςöüéЖжкшक्\u094d\u200d\u200c\u00adｗＷａ"))
LABEL = st.one_of(
    st.sampled_from(["www", "WWW", "ｗｗｗ", "xn--fa-hia", "xn--bcher-kva", "com", "de", "example"]),
    st.text(LETTERS, min_size=1, max_size=20),
)


@st.composite
def hosts(draw: st.DrawFn) -> str:
    labels = draw(st.lists(LABEL, min_size=1, max_size=6))
    host = labels[0]
    for label in labels[1:]:
        host += draw(DOTS) + label
    if draw(st.booleans()):
        host += draw(st.sampled_from(["", ".", "。", ".."]))
    prefix = draw(st.sampled_from(["", "", "https://", "HTTP://", "www.", "ｗｗｗ。", " "]))
    suffix = draw(st.sampled_from(["", "", "/", ":8080", "/path?q=1", "#x", " "]))
    return prefix + host + suffix


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(hosts())
@example("www。dupwww.example")
@example("www.www.com")
@example("ｗｗｗ．ｗｗｗ．acme。com。")
def test_normalising_twice_is_normalising_once(raw: str) -> None:
    try:
        once = normalize_domain(raw)
    except InvalidDomain:
        return
    assert normalize_domain(once) == once
    assert once.isascii() and once == once.lower()
    assert not once.startswith("www.") or once.count(".") == 1  # only `www.com`-like keys keep it


@SETTINGS
@given(st.text(max_size=80))
def test_any_text_is_a_domain_or_invalid_domain(raw: str) -> None:
    try:
        once = normalize_domain(raw)
    except InvalidDomain as exc:
        str(exc).encode("ascii")  # safe to put in any response or log line
        return
    assert normalize_domain(once) == once
