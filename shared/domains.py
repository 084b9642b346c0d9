"""Domain normalisation and validation: the natural key of a lead.

Hunter identifies a company by its web domain. The key is the lower-case ASCII (IDNA) host name
without scheme, path, port or a leading `www.`; it must be a plausible DNS name, so it can never
hold a quote, a space or any character that a Dataverse alternate key rejects (`/ < > * % & : \\ ?`).
"""

from __future__ import annotations

import re

MAX_DOMAIN_LENGTH = 253
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_TLD = re.compile(r"^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


class InvalidDomain(ValueError):
    """The input is not a usable domain; the message says why (safe to show to the caller)."""


def normalize_domain(raw: object) -> str:
    """Return the canonical domain for `raw` (a host name or a URL).

    Raises:
        InvalidDomain: not a string, empty, or not a valid DNS name once normalised.
    """
    if not isinstance(raw, str):
        raise InvalidDomain("must be a string")
    text = raw.strip()
    if not text:
        raise InvalidDomain("must not be empty")
    if len(text) > 2048:
        raise InvalidDomain("is too long")
    lowered = text.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    host = re.split(r"[/?#]", text, maxsplit=1)[0]
    if "@" in host:
        raise InvalidDomain("must not contain user information ('@')")
    if host.count(":") == 1 and host.rsplit(":", 1)[1].isdigit():
        host = host.rsplit(":", 1)[0]
    host = host.rstrip(".").lower()
    if host.startswith("www."):
        host = host[4:]
    ascii_host = _to_ascii(host)
    _check(ascii_host)
    return ascii_host


def _to_ascii(host: str) -> str:
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidDomain("is not a valid internationalised domain name") from None


def _check(host: str) -> None:
    if not host:
        raise InvalidDomain("must contain a host name")
    if len(host) > MAX_DOMAIN_LENGTH:
        raise InvalidDomain(f"must be at most {MAX_DOMAIN_LENGTH} characters")
    labels = host.split(".")
    if len(labels) < 2:
        raise InvalidDomain("must have at least two labels, like example.com")
    for label in labels:
        if not _LABEL.match(label):
            raise InvalidDomain(
                "may contain only letters, digits and hyphens in dot-separated labels of 1-63 "
                "characters, not starting or ending with a hyphen"
            )
    if not _TLD.match(labels[-1]):
        raise InvalidDomain("has an invalid top-level domain")
