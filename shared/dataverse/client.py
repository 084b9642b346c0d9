"""`DataverseClient`: the few Web API calls the lead push needs, one HTTP request per method.

The client is two parts, as Microsoft's PowerPlatform-Dataverse-Client splits `core/_http` from
`operations`:

    transport.py  Transport       token (renewed once on 401), pacing, the in-flight bound, sending,
                                  every answer classified into a response or a `D365Error`
    leads.py      LeadOperations  create, get, find by domain, create-only upsert, CreateMultiple,
                                  the verification queries, WhoAmI — what each request says and
                                  what its answer means for a lead

`DataverseClient` is the lead operations over a transport it builds from the same arguments as
before, so `DataverseClient(base_url, tokens, session, …)` and every name imported from here
(`UpsertResult`, `BULK_MAX_WAIT_SECONDS`, `odata_literal`, …) keep working. No retry loops live in
either part (the retry policy and the queue do that); the network is injected (a
`requests.Session` and a token provider).
"""

from __future__ import annotations

import requests

from shared.dataverse.auth import TokenProvider
from shared.dataverse.leads import (
    BULK_MAX_WAIT_SECONDS,
    CREATE_MULTIPLE_PATH,
    IDS_PER_QUERY,
    LEAD_ODATA_TYPE,
    VALUES_PER_QUERY,
    LeadOperations,
    UpsertResult,
    odata_literal,
)
from shared.dataverse.transport import Transport
from shared.pacing import Pacer

__all__ = [
    "BULK_MAX_WAIT_SECONDS",
    "CREATE_MULTIPLE_PATH",
    "IDS_PER_QUERY",
    "LEAD_ODATA_TYPE",
    "VALUES_PER_QUERY",
    "DataverseClient",
    "UpsertResult",
    "odata_literal",
]


class DataverseClient(LeadOperations):
    """Calls the Dataverse Web API for `leads`: the lead operations over their own transport."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        session: requests.Session | None = None,
        api_version: str = "v9.2",
        timeout: float = 30.0,
        max_in_flight: int = 52,
        pacer: Pacer | None = None,
    ) -> None:
        """The arguments are the transport's, passed on unchanged (see `Transport`).

        Raises:
            ValueError: `base_url` is not https.
        """
        super().__init__(Transport(base_url, tokens, session, api_version, timeout, max_in_flight, pacer))

    @property
    def base_url(self) -> str:
        """The org's URL, without a trailing slash (deep links are built on it)."""
        return self.transport.base_url

    @property
    def api_url(self) -> str:
        """`<base_url>/api/data/<version>`: where every request goes."""
        return self.transport.api_url

    @api_url.setter
    def api_url(self, value: str) -> None:
        self.transport.api_url = value

    @property
    def tokens(self) -> TokenProvider:
        """The token provider the transport asks for a bearer token."""
        return self.transport.tokens

    @tokens.setter
    def tokens(self, value: TokenProvider) -> None:
        self.transport.tokens = value

    @property
    def pacer(self) -> Pacer | None:
        """The process's pacer (None: requests go out as they come)."""
        return self.transport.pacer

    @pacer.setter
    def pacer(self, value: Pacer | None) -> None:
        self.transport.pacer = value

    @property
    def last_latency_ms(self) -> float:
        """How long this thread's last request took (0.0 before its first)."""
        return self.transport.last_latency_ms
