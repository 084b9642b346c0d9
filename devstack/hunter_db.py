"""A stand-in for Hunter's database: the seed's `companies` columns, and the seed's own SQL checks.

The tests and `make demo` create this table in a local PostgreSQL (`devstack/postgres.py`) and read
it back with the query the seed checklist runs (`hamle2-d365-e2e-checklist.md`, C.1):

    SELECT d365_lead_id, d365_sync_status, d365_sync_last_at FROM companies WHERE domain = '<domain>';

Hunter's real table has more columns; the consumer touches only these five (names are settings).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

COMPANIES_DDL = """
CREATE TABLE IF NOT EXISTS companies (
    id                bigserial PRIMARY KEY,
    domain            varchar(255) NOT NULL UNIQUE,
    name              varchar(255),
    d365_lead_id      varchar(64),
    d365_sync_status  varchar(32) NOT NULL DEFAULT 'not_synced',
    d365_sync_last_at timestamptz,
    d365_sync_error   text
)
"""
SEED_SELECT = "SELECT d365_lead_id, d365_sync_status, d365_sync_last_at FROM companies WHERE domain = %s"
# Seed C.3's first step, as written there: an id Dynamics does not have, on a synced row.
SEED_ORPHAN_ID = "00000000-0000-0000-0000-000000000000"
SEED_ORPHAN_UPDATE = (
    "UPDATE companies SET d365_lead_id = '00000000-0000-0000-0000-000000000000', "
    "d365_sync_status = 'synced' WHERE domain = %s"
)


def create_companies(url: str) -> None:
    """Create the `companies` table in the database at `url` (kept if it exists)."""
    with psycopg.connect(url) as connection:
        connection.execute(COMPANIES_DDL)


def add_company(url: str, domain: str) -> None:
    """A `not_synced` row for `domain` (nothing if Hunter has it already)."""
    with psycopg.connect(url) as connection:
        connection.execute(
            "INSERT INTO companies (domain, name) VALUES (%s, %s) ON CONFLICT (domain) DO NOTHING", (domain, domain)
        )


def seed_select(url: str, domain: str) -> tuple[str | None, str, datetime | None] | None:
    """The seed's check, exactly: (d365_lead_id, d365_sync_status, d365_sync_last_at), or None."""
    with psycopg.connect(url) as connection:
        row = connection.execute(SEED_SELECT, (domain,)).fetchone()
    return (row[0], row[1], row[2]) if row else None


def company(url: str, domain: str) -> dict[str, Any] | None:
    """The whole row (the seed's D.3 also reads `d365_sync_error`)."""
    with psycopg.connect(url) as connection:
        cursor = connection.execute(
            "SELECT domain, d365_lead_id, d365_sync_status, d365_sync_last_at, d365_sync_error "
            "FROM companies WHERE domain = %s",
            (domain,),
        )
        row = cursor.fetchone()
        names = [column.name for column in cursor.description or ()]
    return dict(zip(names, row, strict=True)) if row else None


def orphan(url: str, domain: str) -> None:
    """Seed C.3's UPDATE on `domain`'s row."""
    with psycopg.connect(url) as connection:
        connection.execute(SEED_ORPHAN_UPDATE, (domain,))
