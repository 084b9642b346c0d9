"""Hunter's table: one conditional UPDATE per outcome, identifiers quoted by psycopg.

What each outcome writes, on the row(s) whose domain column equals the outcome's domain:

| outcome `status` | lead id | status | last at | error |
|---|---|---|---|---|
| `synced` (`created`, `recreated`, `already_exists`) | the outcome's id | `synced` | `at` | NULL |
| `error` (`failed`) | unchanged | `error` | `at` | the reason, cut to the setting's length |

The UPDATE runs only `WHERE last_at IS NULL OR last_at < at`: the outcome's time is compared with
the time the row holds, so an older outcome that arrives late changes nothing, and a duplicate
delivery (the same `at`) changes nothing either. Under PostgreSQL's READ COMMITTED, an UPDATE that
waits for another transaction's lock on the row re-checks its WHERE against the row that
transaction committed, so two consumers applying two outcomes of one domain at once still end with
the newer one, in either order.

When no row changed, one SELECT tells why: the row is as new or newer (`stale`), or there is no
such domain (`unknown`). The session's time zone is UTC, so a `timestamp without time zone` column
holds UTC times.
"""

from __future__ import annotations

from typing import Any, Literal

import psycopg
from psycopg import sql

from hunter_results.outcome import SYNCED, Outcome
from hunter_results.settings import ConsumerSettings

Applied = Literal["applied", "stale", "unknown"]


class HunterTable:
    """The statements for the configured table and columns, built once."""

    def __init__(self, settings: ConsumerSettings) -> None:
        s = settings
        self.error_max_length = s.error_max_length
        table = sql.Identifier(*s.table)
        domain, lead_id, status, last_at, error = (
            sql.Identifier(name)
            for name in (s.domain_column, s.lead_id_column, s.status_column, s.last_at_column, s.error_column)
        )
        newer = sql.SQL("{domain} = %(domain)s AND ({last_at} IS NULL OR {last_at} < %(at)s)").format(
            domain=domain, last_at=last_at
        )
        self.synced = sql.SQL(
            "UPDATE {table} SET {lead_id} = %(lead_id)s, {status} = %(status)s, {last_at} = %(at)s, "
            "{error} = NULL WHERE {newer}"
        ).format(table=table, lead_id=lead_id, status=status, last_at=last_at, error=error, newer=newer)
        self.failed = sql.SQL(
            "UPDATE {table} SET {status} = %(status)s, {last_at} = %(at)s, {error} = %(error)s WHERE {newer}"
        ).format(table=table, status=status, last_at=last_at, error=error, newer=newer)
        self.exists = sql.SQL("SELECT 1 FROM {table} WHERE {domain} = %(domain)s LIMIT 1").format(
            table=table, domain=domain
        )
        self.probe = sql.SQL("SELECT {domain}, {lead_id}, {status}, {last_at}, {error} FROM {table} LIMIT 0").format(
            table=table, domain=domain, lead_id=lead_id, status=status, last_at=last_at, error=error
        )

    def check(self, connection: psycopg.Connection[Any]) -> None:
        """Fail early when the table or a column is not there.

        Raises:
            psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn: a name in the settings is wrong.
        """
        with connection.transaction():
            connection.execute(self.probe)

    def apply(self, connection: psycopg.Connection[Any], outcome: Outcome) -> Applied:
        """Apply one outcome in one transaction, committed when this returns.

        Raises:
            psycopg.Error: the database refused or could not be reached (nothing was written).
        """
        params = {
            "domain": outcome.domain,
            "status": outcome.status,
            "at": outcome.at,
            "lead_id": outcome.d365_lead_id,
            "error": (outcome.error or "")[: self.error_max_length] or None,
        }
        with connection.transaction():
            changed = connection.execute(self.synced if outcome.status == SYNCED else self.failed, params).rowcount
            if changed:
                return "applied"
            found = connection.execute(self.exists, params).fetchone()
        return "stale" if found else "unknown"


def connect(settings: ConsumerSettings) -> psycopg.Connection[Any]:
    """A connection to Hunter's database with the session in UTC (autocommit between transactions).

    Raises:
        psycopg.OperationalError: the database cannot be reached or refused the login.
    """
    return psycopg.connect(settings.database_url, autocommit=True, options="-c TimeZone=UTC", connect_timeout=10)
