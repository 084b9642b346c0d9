"""Domain normalisation and validation: the natural key of a lead.

Hunter identifies a company by its web domain. The key is the lower-case ASCII (IDNA) host name
without scheme, path, port or a leading `www.`; it must be a plausible DNS name, so it can never
hold a quote, a space or any character that a Dataverse alternate key rejects (`/ < > * % & : \\ ?`).

International names follow IDNA 2008 with the UTS #46 mapping, non-transitional (the `idna`
package; the standard library's codec is IDNA 2003): `faß.de` is `xn--fa-hia.de`, not `fass.de`,
and `σοφος.gr` / `σοφοσ.gr` are two names. UTS #46 maps before anything else looks at the host —
case, full-width letters, the ideographic full stop `。` and its kin become their plain forms, and
the characters UTS #46 marks "ignored" (soft hyphen, zero-width space, variation selectors) vanish,
because a browser resolves those spellings to the very same host. Zero-width joiners (ZWJ/ZWNJ) are
*deviations*, not ignored: they are kept, and valid only where RFC 5892's CONTEXTJ rule allows them
(after a virama, as in Indic scripts); anywhere else the domain is refused, never silently joined.

`normalize_domain` is idempotent — normalising its output again returns the output unchanged —
because the `www.` prefix is stripped after the mapping (so `www。example.com` loses it too) and
the result is plain lower-case LDH labels, which the mapping leaves alone.
"""

from __future__ import annotations

import re

import idna

# A key longer than this cannot be stored whole: without Hunter's custom columns the key travels in
# the lead's `websiteurl` (MaxLength 200) as `https://<domain>`, and 200 - len("https://") = 192.
# A key that is cut to fit cannot be found again, so it is refused here instead (DNS allows 253).
MAX_DOMAIN_LENGTH = 192
MAX_INPUT_LENGTH = 2048
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")
_PORT = re.compile(r"[0-9]{1,5}")
_ACE_PREFIX = "xn--"


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
    if len(text) > MAX_INPUT_LENGTH:
        raise InvalidDomain("is too long")
    lowered = text.lower()
    for scheme in ("https://", "http://"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    host = re.split(r"[/?#]", text, maxsplit=1)[0]
    if "@" in host:
        raise InvalidDomain("must not contain user information ('@')")
    if host.count(":") == 1 and _PORT.fullmatch(host.rsplit(":", 1)[1]):
        host = host.rsplit(":", 1)[0]
    # Map first, then trim: the trailing dot and `www.` may only appear once UTS #46 has turned
    # `。`, `．` or `ＷＷＷ` into their ASCII forms.
    host = _strip_www(_uts46_map(host).rstrip("."))
    ascii_host = ".".join(_to_ascii(label) for label in host.split("."))
    _check(ascii_host)
    return ascii_host


def _uts46_map(host: str) -> str:
    """UTS #46 mapping with the STD3 rules: lower-case, NFC, full-width and dot variants folded."""
    try:
        return idna.uts46_remap(host, std3_rules=True, transitional=False)
    except idna.IDNAError as exc:
        raise InvalidDomain(f"contains a character not allowed in a domain name{_codepoint(exc)}") from None


def _strip_www(host: str) -> str:
    # Every leading `www.` goes, so the result never starts with one (idempotence), but never the
    # label that leaves fewer than two: `www.com` is a company's own domain, not `com`.
    while host.startswith("www.") and host.count(".") >= 2:
        host = host[4:]
    return host


def _to_ascii(label: str) -> str:
    """One label as its A-label. Plain LDH labels are DNS names, not IDNs: `_check` vets them."""
    if not label:
        raise InvalidDomain("must not contain an empty label ('..')")
    if label.isascii() and not label.startswith(_ACE_PREFIX):
        return label
    try:
        return idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidDomain(f"is not a valid internationalised domain name (IDNA 2008){_codepoint(exc)}") from None


def _codepoint(exc: Exception | None) -> str:
    # Name the offending character by its code point only: the raw input may hold a lone surrogate
    # or control character that must not be echoed into a JSON response or a log line.
    point = getattr(exc, "codepoint", None)
    return f" (U+{point:04X})" if isinstance(point, int) else ""


def _check(host: str) -> None:
    if not host:
        raise InvalidDomain("must contain a host name")
    if len(host) > MAX_DOMAIN_LENGTH:
        raise InvalidDomain(f"must be at most {MAX_DOMAIN_LENGTH} characters once normalised")
    labels = host.split(".")
    if len(labels) < 2:
        raise InvalidDomain("must have at least two labels, like example.com")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise InvalidDomain(
                "may contain only letters, digits and hyphens in dot-separated labels of 1-63 "
                "characters, not starting or ending with a hyphen"
            )
    if not _TLD.fullmatch(labels[-1]):
        raise InvalidDomain("has an invalid top-level domain")
