"""An HTTPS simulator of Dataverse (Web API v9.2, `leads`), Entra ID, Key Vault and the App Service
managed-identity endpoint, for local runs and tests. One process, one port, on loopback.

It speaks the wire protocol of `shared/reference/dataverse-wire.md` so that Microsoft's own
clients (MSAL, azure-identity, azure-keyvault-secrets, PowerPlatform-Dataverse-Client) work
against it unmodified. Its certificate is issued at start-up from the user's kept local CA
(devstack/localca.py, made by `trustme` once; `make trust` makes browsers trust it), or from a new
CA per start when no CA directory is given (most tests); the CA and a bundle of the system CAs plus
it are written to the state directory, for `REQUESTS_CA_BUNDLE`.

One module per service it imitates; each reads the request and shapes the answer, and changes
state only through the methods of `SimulatorState` (`state.py`):

    module       routes (all on https://127.0.0.1:<port>)
    entra        GET  /{tenant}/v2.0/.well-known/openid-configuration     Entra ID discovery
                 POST /{tenant}/oauth2/v2.0/token                          client credentials (Dataverse, the API)
    devicecode   POST /{tenant}/oauth2/v2.0/devicecode, GET|POST /devicelogin   device code sign-in (connect)
    signin       GET|POST /{tenant}/oauth2/v2.0/authorize                  sign-in page of test users → code (PKCE)
                 POST /{tenant}/oauth2/v2.0/token                          authorization_code, refresh_token (SPA CORS)
                 GET  /{tenant}/discovery/v2.0/keys                        JWKS (RS256 signing key)
                 GET  /{tenant}/oauth2/v2.0/logout                         sign-out
    directory    the app registrations (API with roles, SPA, backend, operator), test users, codes
    identity     GET  /msi/token?api-version=2019-08-01&resource=…          managed identity (X-IDENTITY-HEADER)
    keyvault     GET  /secrets/{name}[/{version}]                          Key Vault (401 challenge first)
    dataverse    *    /api/data/v9.2/…                                     leads, WhoAmI, EntityDefinitions,
                                                                           service-protection limits, faults
    security     *    /api/data/v9.2/systemusers|roles|privileges|…        application users, roles and privileges
    metadata     *    /api/data/v9.2/EntityDefinitions(LogicalName='lead')/Attributes|Keys   columns, keys
    org          the org's users, roles, solutions, lead columns and keys (`Org`, on `Simulator.org`)
    admin        *    /_admin/…                                            faults, limits, rotation, inspection
    leadpage     GET  /main.aspx?pagetype=entityrecord&etn=lead&id=…        the lead's record page (HTML)
    server       the HTTPS server, the local CA, dispatch, `Simulator` (state + start/stop), `main`
    admin_client `SimulatorAdmin`: the admin API for tests, benchmarks and the demo

Run alone: `python -m devstack.simulator [--port 8443] [--state-dir .devstack]`.
"""

from devstack.simulator.admin_client import SimulatorAdmin
from devstack.simulator.leads import LEAD_COLUMNS, select, validate_lead
from devstack.simulator.server import Simulator
from devstack.simulator.state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_IDENTITY_HEADER,
    DEFAULT_MI_CLIENT_ID,
    DEFAULT_SECRET,
    DEFAULT_SECRET_NAME,
    DEFAULT_TENANT,
    Fault,
    Limits,
)
from devstack.simulator.wire import Response, json_response, odata_error

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_IDENTITY_HEADER",
    "DEFAULT_MI_CLIENT_ID",
    "DEFAULT_SECRET",
    "DEFAULT_SECRET_NAME",
    "DEFAULT_TENANT",
    "LEAD_COLUMNS",
    "Fault",
    "Limits",
    "Response",
    "Simulator",
    "SimulatorAdmin",
    "json_response",
    "odata_error",
    "select",
    "validate_lead",
]
