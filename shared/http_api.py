"""HTTP triggers: thin adapters from requests to `pipeline` and `state` (docs/design.md §3).

Every bad input gets 400 `{error, message, field?}` and nothing is enqueued for it; a body over
the limit gets 413; a disabled integration answers 503 `{error: "d365_integration_disabled"}`.

Who may call (docs/design.md §3): App Service Authentication validates every caller's Entra ID token in
front of the app, so the API routes are ANONYMOUS to the Functions host (its key check does not
accept an Entra ID identity: azure-functions-host `AuthUtility.PrincipalHasAuthLevelClaim`), and
each route checks the caller's app role here (`shared/principal.py`): 401 without a principal, 403
`{error: "forbidden", message, role}` without the role. The health routes stay open.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError, ServiceRequestError

from shared.config import ConfigError, get_settings
from shared.dataverse import D365AuthenticationError, D365Error
from shared.domains import InvalidDomain, normalize_domain
from shared.engine import replay_poison
from shared.ids import is_correlation_id
from shared.models import InputError, LeadPush, SyncState, parse_json
from shared.pipeline import accept, accept_batch
from shared.principal import PUSH, READ, REPLAY, Refusal, authorize
from shared.services import get_services

logger = logging.getLogger(__name__)
bp = func.Blueprint()

MAX_BATCH = 1000
MAX_LEAD_BYTES = 64 * 1024
MAX_BATCH_BYTES = 4 * 1024 * 1024
ENQUEUE_CONCURRENCY = 16
_ROUTES = "v1/d365/"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, ensure_ascii=False), status_code=status, mimetype="application/json", headers=headers
    )


def _error(status: int, code: str, message: str, field: str | None = None) -> func.HttpResponse:
    body = {"error": code, "message": message}
    if field:
        body["field"] = field
    return _json(status, body)


def _correlation_id(req: func.HttpRequest) -> str:
    given = req.headers.get("x-correlation-id") or req.headers.get("x-ms-client-request-id") or ""
    return given if is_correlation_id(given) else uuid.uuid4().hex


def _status_url(req: func.HttpRequest, domain: str) -> str:
    """The status route as a path on this API's origin (`/api/v1/d365/leads/<domain>`): built
    from the request's own path, so it follows the host's route prefix and never echoes the
    caller's Host header back as an absolute URL."""
    path = urlsplit(req.url).path
    cut = path.rfind(_ROUTES)
    prefix = path[:cut] if cut >= 0 else "/api/"
    return f"{prefix}{_ROUTES}leads/{quote(domain, safe='')}"


def _storage_error(exc: AzureError, correlation_id: str, done: str) -> func.HttpResponse:
    """503 for a storage failure. "Never sent" (`ServiceRequestError`) means nothing was `done`;
    anything else may have been done before the answer was lost — a retry is safe either way,
    because the worker is idempotent."""
    logger.error("d365_storage_error", extra={"error_code": type(exc).__name__, "correlation_id": correlation_id})
    if isinstance(exc, ServiceRequestError):
        return _error(503, "storage_unavailable", f"storage could not be reached: nothing was {done}; try again")
    return _error(
        503,
        "storage_unavailable",
        f"storage failed ({type(exc).__name__}): it is unknown whether anything was {done}; a retry is safe",
    )


def _body(req: func.HttpRequest, limit: int) -> Any:
    """The parsed JSON body.

    Raises:
        InputError: too large (code payload_too_large), not UTF-8, or not JSON. NaN, Infinity and
            over-long integers parse, so that validation names the field holding them.
    """
    raw = req.get_body() or b""
    if len(raw) > limit:
        raise InputError(f"the body is larger than {limit} bytes", code="payload_too_large")
    if not raw.strip():
        raise InputError("the body is empty; send a JSON object", code="invalid_body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the body is not UTF-8 text", code="invalid_encoding") from None
    return parse_json(text, "the body")


def _guard() -> func.HttpResponse | None:
    """503 when disabled or misconfigured (the message names the setting, never a value)."""
    try:
        settings = get_settings()
    except ConfigError as exc:
        logger.error("d365_config_error", extra={"error": str(exc)})
        return _error(503, "configuration_error", str(exc))
    if not settings.enabled:
        return _error(503, "d365_integration_disabled", "the Dynamics 365 integration is switched off")
    return None


def _refused(req: func.HttpRequest, role: str, *also: str) -> func.HttpResponse | None:
    """401/403 unless the caller App Service Authentication vouched for holds `role` (or one of
    `also`); the 403 body's `role` names `role`, the one to ask for."""
    caller = authorize(req.headers, (role, *also))
    if not isinstance(caller, Refusal):
        return None
    logger.info("d365_http_refused", extra={"status": caller.status, "error_code": caller.code, "role": role})
    body = {"error": caller.code, "message": caller.message, "role": role}
    return _json(caller.status, body, {"WWW-Authenticate": "Bearer"} if caller.status == 401 else None)


def _input_error(exc: InputError) -> func.HttpResponse:
    status = 413 if exc.code == "payload_too_large" else 400
    return _json(status, exc.to_dict())


def _rejected(exc: InputError, correlation_id: str) -> None:
    logger.info(
        "d365_push_rejected",
        extra={
            "source": "http",
            "error_code": exc.code,
            "field": exc.field,
            "error": exc.message,
            "correlation_id": correlation_id,
        },
    )


@bp.route(route="v1/d365/push-lead", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def push_lead(req: func.HttpRequest) -> func.HttpResponse:
    """Accept one lead: 202 queued (a synced domain too: the worker verifies it in Dynamics),
    400/413 bad input, 503 off."""
    refused = _refused(req, PUSH) or _guard()
    if refused:
        return refused
    correlation_id = _correlation_id(req)
    try:
        lead = LeadPush.from_request(_body(req, MAX_LEAD_BYTES), correlation_id)
    except InputError as exc:
        _rejected(exc, correlation_id)
        return _input_error(exc)
    try:
        result = accept(lead, get_services())
    except AzureError as exc:
        return _storage_error(exc, correlation_id, "enqueued")
    return _json(202, result.to_dict(_status_url(req, lead.domain)), {"x-correlation-id": correlation_id})


@bp.route(route="v1/d365/push-leads", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def push_leads(req: func.HttpRequest) -> func.HttpResponse:
    """Accept up to 1000 leads: 202 with a per-item `queued` / `skipped` / `rejected` (+ reason)."""
    refused = _refused(req, PUSH) or _guard()
    if refused:
        return refused
    correlation_id = _correlation_id(req)
    try:
        body = _body(req, MAX_BATCH_BYTES)
        leads = body.get("leads") if isinstance(body, dict) else None
        if not isinstance(leads, list):
            raise InputError("must be a JSON array of leads", field="leads", code="invalid_body")
        if not leads:
            raise InputError("must hold at least one lead", field="leads", code="invalid_body")
        if len(leads) > MAX_BATCH:
            raise InputError(
                f"at most {MAX_BATCH} leads per request (got {len(leads)})", field="leads", code="too_many_leads"
            )
    except InputError as exc:
        _rejected(exc, correlation_id)
        return _input_error(exc)
    items: list[dict[str, Any]] = [{} for _ in leads]
    valid: list[tuple[int, LeadPush]] = []
    seen: set[str] = set()
    for index, raw in enumerate(leads):
        try:
            lead = LeadPush.from_request(raw, f"{correlation_id}-{index}")
            if lead.domain in seen:
                raise InputError("appears more than once in this request", field="domain", code="duplicate_domain")
        except InputError as exc:
            _rejected(exc, correlation_id)
            items[index] = {"index": index, "status": "rejected", **exc.to_dict()}
            continue
        except Exception as exc:  # not swallowed: logged and answered for this item
            # Validation should turn every bad item into an InputError; if a bug lets one through,
            # that item alone is refused — the batch still answers for every other item.
            logger.error(
                "d365_push_rejected",
                extra={
                    "source": "http",
                    "error_code": "internal_error",
                    "error": type(exc).__name__,
                    "correlation_id": correlation_id,
                },
            )
            items[index] = {
                "index": index,
                "status": "rejected",
                "error": "internal_error",
                "message": f"this lead could not be validated ({type(exc).__name__}); nothing was enqueued for it",
            }
            continue
        seen.add(lead.domain)
        valid.append((index, lead))
    try:
        answers = accept_batch([lead for _, lead in valid], get_services(), ENQUEUE_CONCURRENCY)
    except AzureError as exc:
        logger.error("d365_storage_error", extra={"error_code": type(exc).__name__, "correlation_id": correlation_id})
        return _error(503, "storage_unavailable", "the state table could not be reached; nothing was enqueued")
    for (index, lead), answer in zip(valid, answers, strict=True):
        items[index] = {"index": index, **answer.to_dict(_status_url(req, lead.domain))}
    accepted = sum(1 for item in items if item["status"] in ("queued", "skipped"))
    rejected = sum(1 for item in items if item["status"] == "rejected")
    summary: dict[str, Any] = {"accepted": accepted, "rejected": rejected, "items": items}
    unknown = len(items) - accepted - rejected
    if unknown:
        summary["unknown"] = unknown
    return _json(202, summary, {"x-correlation-id": correlation_id})


@bp.route(route="v1/d365/leads/{domain}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def lead_status(req: func.HttpRequest) -> func.HttpResponse:
    """The sync state of one domain (app role Leads.Read, or Leads.Push, whose holders read what
    they push); a domain never seen reads 200 `not_synced`, the seed's word for it, not an error."""
    refused = _refused(req, READ, PUSH)
    if refused:
        return refused
    try:
        domain = normalize_domain(req.route_params.get("domain", ""))
    except InvalidDomain as exc:
        return _error(400, "invalid_domain", f"domain: {exc}", "domain")
    try:
        state = get_services().state.get(domain)
    except ConfigError as exc:
        return _error(503, "configuration_error", str(exc))
    except AzureError as exc:
        return _storage_error(exc, _correlation_id(req), "read")
    return _json(200, (state or SyncState(domain=domain)).public())


@bp.route(route="v1/d365/poison/replay", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def replay(req: func.HttpRequest) -> func.HttpResponse:
    """Move poison messages back to the push queue with a fresh attempt count; returns counts."""
    refused = _refused(req, REPLAY) or _guard()
    if refused:
        return refused
    try:
        limit = int(req.params.get("max", "1000"))
    except ValueError:
        return _error(400, "invalid_field", "max: must be a whole number", "max")
    try:
        counts = replay_poison(get_services(), limit=max(1, min(limit, 10_000)))
    except AzureError as exc:
        return _storage_error(exc, _correlation_id(req), "replayed")
    return _json(200, counts)


@bp.route(route="healthz/live", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def live(req: func.HttpRequest) -> func.HttpResponse:
    """The process is up."""
    return _json(200, {"status": "live"})


@bp.route(route="healthz/ready", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def ready(req: func.HttpRequest) -> func.HttpResponse:
    """Settings valid, storage reachable, a Dataverse token obtainable. Anonymous, so: the answer
    is cached for `READY_CACHE_SECONDS` (a flood of probes makes no flood of token requests), and
    failures are named by kind, never with the identity provider's text or any id."""
    now = time.monotonic()
    with _ready_lock:
        if _ready_cache and now - _ready_cache[0] < READY_CACHE_SECONDS:
            status, body = _ready_cache[1], _ready_cache[2]
            return _json(status, body)
        status, body = _readiness()
        _ready_cache[:] = [now, status, body]
    return _json(status, body)


READY_CACHE_SECONDS = 5.0
_ready_lock = threading.Lock()
_ready_cache: list[Any] = []


def _readiness() -> tuple[int, dict[str, Any]]:
    """Each dependency checked on its own; a failure is named by its kind (`error: unreachable`,
    `error: authentication failed`, `error: configuration`, `error: <AzureError type>`), and one
    nobody foresaw is logged with its traceback and reported as `error: unexpected (<type>)`:
    the route answers 503 JSON, never a 500 with an empty body."""
    try:
        settings = get_settings()
        services = get_services()
    except ConfigError as exc:
        return 503, {"status": "not_ready", "checks": {"settings": f"error: {exc}"}}
    checks: dict[str, Any] = {"settings": "ok", "auth_mode": settings.auth_mode, "enabled": settings.enabled}
    checks["storage"] = _check("storage", lambda: services.queues.push.get_queue_properties())
    checks["dataverse_auth"] = _check("dataverse_auth", lambda: services.dataverse.tokens.get_token("healthz"))
    healthy = checks["storage"] == "ok" and checks["dataverse_auth"] == "ok"
    return (200 if healthy else 503), {"status": "ready" if healthy else "not_ready", "checks": checks}


def _check(name: str, probe: Any) -> str:
    """ "ok", or the kind of failure of `probe()` (no message text: it may name ids or hosts)."""
    try:
        probe()
    except D365AuthenticationError:
        return "error: authentication failed"
    except ConfigError:
        return "error: configuration"
    except D365Error:
        return "error: unreachable"
    except AzureError as exc:
        return f"error: {type(exc).__name__}"
    except Exception as exc:  # not swallowed: logged with its traceback, answered as a kind
        logger.exception("healthz_check_failed", extra={"check": name, "error_code": type(exc).__name__})
        return f"error: unexpected ({type(exc).__name__})"
    return "ok"
