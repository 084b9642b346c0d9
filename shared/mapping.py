"""Hunter lead → Dataverse `lead` payload, pure.

Column names and maximum lengths are Dataverse's (see the `lead` table): the columns Hunter's string
fields land in come from `shared.models.STRING_FIELDS`, the one table of field → (column, max
length); `COMPOSED_COLUMNS` adds the columns this module fills from other values. Strings are cut
to fit, counted in UTF-16 code units as Dataverse counts them, so that a payload built here never
earns the 400 `0x80044331` length error. Hunter's custom columns
(`hnt_*`) are sent only when the org has them (`HUNTER_D365_CUSTOM_FIELDS`). Without them the
natural key travels in `websiteurl` as `canonical_website(domain)`, which is what the lookup filters
on — so that value is never cut: intake refuses a domain whose URL would not fit
(`shared.domains.MAX_DOMAIN_LENGTH`), and a cut key would be found for nobody, or for another company.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.domains import InvalidDomain, normalize_domain
from shared.models import STRING_FIELDS, LeadPush, utf16_length

# Columns filled from more than one field or from derived values, not from one Hunter field:
# their maximum lengths (the fields' own columns are in `STRING_FIELDS`).
COMPOSED_COLUMNS: dict[str, int] = {
    "subject": 300,
    "lastname": 50,
    "firstname": 50,
    "hnt_domain": 255,
}
# Dataverse column → maximum length, for every string column this app writes.
LEAD_MAX_LENGTHS: dict[str, int] = {
    **{spec.column: spec.max_length for spec in STRING_FIELDS.values() if spec.column},
    **COMPOSED_COLUMNS,
}
LEAD_SOURCE_WEB = 8
QUALITY_HOT, QUALITY_WARM, QUALITY_COLD = 1, 2, 3
DOMAIN_COLUMN = "hnt_domain"
WEBSITE_COLUMN = "websiteurl"


def fit(value: str, limit: int) -> str:
    """`value` cut to at most `limit` UTF-16 code units (an ellipsis marks a cut); a character
    beyond U+FFFF is never split in half."""
    if utf16_length(value) <= limit:
        return value
    budget = limit - 1  # the ellipsis takes one unit
    kept: list[str] = []
    for char in value:
        budget -= 2 if ord(char) > 0xFFFF else 1
        if budget < 0:
            break
        kept.append(char)
    return "".join(kept) + "…"


def canonical_website(domain: str) -> str:
    """The website URL the app writes and, without custom columns, looks leads up by: the same
    string in both places, since `lead_payload` writes exactly this value.

    Raises:
        ValueError: the URL would not fit `websiteurl` — intake refuses such domains, so this is a
            bug guard: a cut URL would make the lookup miss and the lead be created twice.
    """
    url = f"https://{domain}"
    if utf16_length(url) > LEAD_MAX_LENGTHS[WEBSITE_COLUMN]:
        raise ValueError(f"the domain is too long for {WEBSITE_COLUMN} ({len(domain)} characters)")
    return url


def lead_quality(final_score: float | None) -> int | None:
    """Hunter's 0–100 score as Dataverse's lead rating: ≥70 hot, ≥40 warm, else cold."""
    if final_score is None:
        return None
    if final_score >= 70:
        return QUALITY_HOT
    if final_score >= 40:
        return QUALITY_WARM
    return QUALITY_COLD


def lead_payload(lead: LeadPush, custom_fields: bool) -> dict[str, Any]:
    """The JSON body that creates `lead` in Dataverse."""
    name = lead.company_name or lead.domain
    payload: dict[str, Any] = {
        "subject": f"Hunter: {name}",
        "lastname": name,
        "companyname": name,
        "websiteurl": canonical_website(lead.domain)
        if not custom_fields
        else (lead.website or canonical_website(lead.domain)),
        "emailaddress1": lead.email,
        "telephone1": lead.phone,
        "address1_city": lead.city,
        "address1_country": lead.country,
        "description": lead.description,
        "leadsourcecode": LEAD_SOURCE_WEB,
        "leadqualitycode": lead_quality(lead.final_score),
    }
    if custom_fields:
        payload.update(
            {
                DOMAIN_COLUMN: lead.domain,
                "hnt_finalscore": None if lead.final_score is None else round(lead.final_score),
                "hnt_segment": lead.segment,
                "hnt_priority": lead.priority,
            }
        )
    body = {key: value for key, value in payload.items() if value not in (None, "")}
    for key, limit in LEAD_MAX_LENGTHS.items():
        if isinstance(body.get(key), str):
            body[key] = fit(body[key], limit)
    return body


def identity_column(custom_fields: bool) -> str:
    """The lead column that says which domain a lead belongs to."""
    return DOMAIN_COLUMN if custom_fields else WEBSITE_COLUMN


def lookup_key(custom_fields: bool) -> tuple[str, Callable[[str], str]]:
    """The column a lead's domain is found by, and the value a domain has there."""
    if custom_fields:
        return DOMAIN_COLUMN, lambda domain: domain
    return WEBSITE_COLUMN, canonical_website


def belongs(record: dict[str, Any], domain: str, custom_fields: bool) -> bool:
    """False when the lead's domain column names another domain. A lead with the column empty
    (made by hand in Dynamics) is taken as the caller's: there is nothing to contradict it."""
    value = record.get(identity_column(custom_fields))
    if not isinstance(value, str) or not value.strip():
        return True
    try:
        return normalize_domain(value) == domain
    except InvalidDomain:
        return False
