"""The simulator's filter parser and the client's error classification."""

import pytest

from devstack.odata import FilterSyntaxError, UnknownColumn, parse_filter
from shared.dataverse.client import odata_literal
from shared.dataverse.errors import D365APIError, D365AuthenticationError, D365RateLimitError, error_from_response

COLUMNS = {"hnt_domain", "subject"}


def test_doubled_quotes_are_one_quote() -> None:
    match = parse_filter("hnt_domain eq 'o''brien.com'", COLUMNS)
    assert match({"hnt_domain": "O'Brien.com"}) and not match({"hnt_domain": "obrien.com"})


def test_escaped_injection_is_a_plain_literal() -> None:
    text = f"hnt_domain eq {odata_literal('x')}' or hnt_domain ne {odata_literal('y')}"
    with pytest.raises(FilterSyntaxError):
        parse_filter(text, COLUMNS)
    safe = parse_filter(
        f"hnt_domain eq {odata_literal(chr(120) + chr(39) + ' or hnt_domain ne ' + chr(39) + 'y')}", COLUMNS
    )
    assert not safe({"hnt_domain": "other.com"})


def test_and_or_and_unknown_columns() -> None:
    match = parse_filter("hnt_domain eq 'a.com' and subject eq 'x' or subject eq 'y'", COLUMNS)
    assert match({"hnt_domain": "b.com", "subject": "Y"})
    with pytest.raises(UnknownColumn):
        parse_filter("nope eq 'x'", COLUMNS)
    with pytest.raises(FilterSyntaxError):
        parse_filter("hnt_domain eq 'x", COLUMNS)


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (401, D365AuthenticationError, False),
        (429, D365RateLimitError, True),
        (500, D365APIError, True),
        (503, D365APIError, True),
        (400, D365APIError, False),
        (403, D365APIError, False),
    ],
)
def test_errors_are_classified_by_what_the_caller_must_do(status: int, kind: type, transient: bool) -> None:
    error = error_from_response(status, b'{"error":{"code":"0x1","message":"m"}}', {"Retry-After": "9"})
    assert type(error) is kind
    assert getattr(error, "transient", False) == transient
    if status == 429:
        assert isinstance(error, D365RateLimitError) and error.retry_after == 9
