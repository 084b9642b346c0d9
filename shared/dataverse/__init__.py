"""Dataverse Web API access: token providers, the client, and its typed errors."""

from shared.dataverse.auth import ManagedIdentityTokenProvider, MsalTokenProvider, TokenProvider
from shared.dataverse.client import DataverseClient, odata_literal
from shared.dataverse.errors import (
    D365APIError,
    D365AuthenticationError,
    D365Error,
    D365RateLimitError,
    D365RequestNotSentError,
    D365ResponseLostError,
)

__all__ = [
    "D365APIError",
    "D365AuthenticationError",
    "D365Error",
    "D365RateLimitError",
    "D365RequestNotSentError",
    "D365ResponseLostError",
    "DataverseClient",
    "ManagedIdentityTokenProvider",
    "MsalTokenProvider",
    "TokenProvider",
    "odata_literal",
]
