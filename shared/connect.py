"""Connect a Dataverse org to the app, signed in as its administrator (`make connect`).

    python -m shared.connect [--dry-run] [--org URL] [--application-id GUID] [--business-unit NAME]
                             [--depth Global] [--auth device-code|azure-cli] [--no-smoke]

Idempotent: it reads first, changes only what differs, and a second run changes nothing. With
`--dry-run` it prints the plan and changes nothing. In order:

1. the signed-in administrator holds every privilege the steps below need (else it refuses and
   names the missing ones: `RetrieveUserSetOfPrivilegesByNames`);
2. the publisher `hunter` (customization prefix `hnt`) and the unmanaged solution `HunterLeadPush`
   that the columns and the key belong to;
3. the `hnt_*` columns on `lead` and the alternate key `hnt_domainkey` on `hnt_domain`;
4. the application user for the app's identity (the managed identity's or the app registration's
   client id) in the chosen business unit (the root one by default);
5. the security role `Hunter lead push` in that business unit with exactly `prvCreateLead`,
   `prvReadLead` and `prvWriteLead` at the chosen depth (created, or corrected: other privileges
   removed, depths set), assigned to the application user;
6. waiting for the key's index to become Active (`EntityKeyIndexStatus`), with progress;
7. the smoke test (`shared.smoketest`) as the app, when this machine can sign in as the app.

Sign-in: a device code (azure-identity `DeviceCodeCredential`, Azure CLI's public client, which
Dataverse accepts) or a developer's `az login` (`AzureCliCredential`). No secret is stored; no token
is printed. Every call's shape is from Microsoft Learn and is modelled in the simulator
(`devstack/simulator/security.py`, `metadata.py`, which cite each page).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests

from shared.mapping import LEAD_MAX_LENGTHS

DEPTHS = ("Basic", "Local", "Deep", "Global")
# What the app does with leads: create (POST, CreateMultiple, create-only upsert), read (verify an
# id, find by domain) and write (an upsert is checked for both create and write). Nothing else.
APP_PRIVILEGES = ("prvCreateLead", "prvReadLead", "prvWriteLead")
# What this command needs from the person running it, one per kind of call it makes.
ADMIN_PRIVILEGES = (
    "prvReadUser",
    "prvCreateUser",
    "prvReadRole",
    "prvCreateRole",
    "prvWriteRole",
    "prvAssignRole",
    "prvReadPublisher",
    "prvCreatePublisher",
    "prvReadSolution",
    "prvCreateSolution",
    "prvReadEntity",
    "prvCreateAttribute",
    "prvReadEntityKey",
    "prvCreateEntityKey",
)
ROLE_NAME = "Hunter lead push"
PUBLIC_AUTHORITY = "https://login.microsoftonline.com"
PUBLISHER: dict[str, Any] = {
    "uniquename": "hunter",
    "friendlyname": "Hunter",
    "description": "Hunter lead push: the hnt_* columns and key on Lead.",
    "customizationprefix": "hnt",
    # Choice values this publisher would add start here (10000-99999; the app adds no choices).
    "customizationoptionvalueprefix": 46810,
}
SOLUTION = "HunterLeadPush"
KEY_SCHEMA_NAME = "hnt_DomainKey"
KEY_COLUMN = "hnt_domain"
LEAD = "EntityDefinitions(LogicalName='lead')"


@dataclass(frozen=True)
class Column:
    """A Hunter column on `lead`: schema name, label, and its type's definition."""

    schema_name: str
    label: str
    definition: dict[str, Any]

    @property
    def logical_name(self) -> str:
        return self.schema_name.lower()


def _label(text: str) -> dict[str, Any]:
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.Label",
        "LocalizedLabels": [
            {"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}
        ],
    }


def _string(length: int) -> dict[str, Any]:
    # "Create a string column" (create-update-column-definitions-using-web-api.md).
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
        "MaxLength": length,
        "FormatName": {"Value": "Text"},
    }


def _integer() -> dict[str, Any]:
    # "Create an integer column" (same page): whole numbers, no format.
    return {
        "@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata",
        "Format": "None",
        "MinValue": -2147483648,
        "MaxValue": 2147483647,
    }


COLUMNS = (
    Column("hnt_Domain", "Domain", _string(LEAD_MAX_LENGTHS["hnt_domain"])),
    Column("hnt_Segment", "Segment", _string(LEAD_MAX_LENGTHS.get("hnt_segment", 100))),
    Column("hnt_FinalScore", "Final score", _integer()),
    Column("hnt_Priority", "Priority", _integer()),
)


class ConnectError(Exception):
    """A step failed: Dataverse's answer (status, code, message; never a token) or a state the
    command will not change by itself (a publisher with another prefix, a Failed key index)."""


class Refused(ConnectError):
    """The signed-in user lacks privileges this command needs; `missing` names them."""

    def __init__(self, user_id: str, missing: list[str]) -> None:
        self.missing = missing
        super().__init__(
            f"the signed-in user ({user_id}) lacks {len(missing)} privilege(s) connect needs: {', '.join(missing)}. "
            "Sign in as a System Administrator of this environment, or have one grant these."
        )


class WebApi:
    """The Dataverse Web API calls `connect` makes: one HTTP request per method."""

    def __init__(
        self, base_url: str, token: Callable[[], str], session: requests.Session | None = None, timeout: float = 30.0
    ) -> None:
        self.api = f"{base_url.rstrip('/')}/api/data/v9.2/"
        self._token = token
        self._session = session or requests.Session()
        self._timeout = timeout

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "If-None-Match": "null",
            "Authorization": f"Bearer {self._token()}",
            **(extra or {}),
        }

    def call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """One request; the JSON answer (None for 204, or for 404 when `missing_ok`).
        Raises ConnectError for any other error answer or no answer."""
        try:
            response = self._session.request(
                method, self.api + path, params=params, json=body, headers=self._headers(headers), timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise ConnectError(f"{method} {path}: no answer ({type(exc).__name__})") from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            raise ConnectError(
                f"{method} {path}: {response.status_code} {error.get('code', '')} {error.get('message', '')}".rstrip()
            )
        return response.json() if response.content else None

    def rows(self, collection: str, select: str, filter_: str) -> list[dict[str, Any]]:
        """`GET collection?$select=…&$filter=…` → its rows."""
        answer = self.call("GET", collection, {"$select": select, "$filter": filter_})
        return list(answer.get("value", []))


def literal(value: str) -> str:
    """An OData string literal."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Target:
    """What the org should look like."""

    application_id: str
    business_unit: str = ""  # a business unit's name; empty: the root business unit
    depth: str = "Global"
    role_name: str = ROLE_NAME


class Connector:
    """Brings an org to `target`, printing each step as `<action> <what> <detail>`; with `dry_run`
    it only reads and prints what it would do."""

    def __init__(
        self,
        api: WebApi,
        target: Target,
        dry_run: bool = False,
        out: TextIO = sys.stdout,
        key_timeout: float = 900.0,
        poll_seconds: float = 5.0,
    ) -> None:
        self.api = api
        self.target = target
        self.dry_run = dry_run
        self.out = out
        self.key_timeout = key_timeout
        self.poll_seconds = poll_seconds
        self.changes = 0

    def say(self, action: str, what: str, detail: str = "") -> None:
        """Print one step; an action other than ok/wait counts as a change (or, dry, a planned one)."""
        if action not in ("ok", "wait", "skip", "note"):
            self.changes += 1
            action = f"would {action}" if self.dry_run else action
        print(f"  {action:<14} {what:<22} {detail}".rstrip(), file=self.out, flush=True)

    def run(self) -> int:
        """Every step; returns the number of changes made (dry run: planned). Raises Refused or ConnectError."""
        who = self.api.call("GET", "WhoAmI")
        user_id = str(who["UserId"])
        print(
            f"connect: {self.api.api} as systemuser {user_id}{' (dry run: nothing changes)' if self.dry_run else ''}",
            file=self.out,
        )
        self.check_admin(user_id)
        business_unit = self.business_unit()
        self.publisher_and_solution()
        self.columns()
        key_pending = self.key()
        app_user = self.application_user(business_unit)
        role = self.role(business_unit)
        self.assignment(app_user, role)
        if key_pending and not self.dry_run:
            self.wait_for_key()
        return self.changes

    # -- 1. the administrator ----------------------------------------------------------------------

    def check_admin(self, user_id: str) -> None:
        """Refuse unless the signed-in user holds ADMIN_PRIVILEGES (RetrieveUserSetOfPrivilegesByNames)."""
        path = f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserSetOfPrivilegesByNames(PrivilegeNames=@p)"
        answer = self.api.call("GET", path, {"@p": json.dumps(list(ADMIN_PRIVILEGES))})
        held = {str(row.get("PrivilegeName")) for row in answer.get("RolePrivileges", [])}
        missing = [name for name in ADMIN_PRIVILEGES if name not in held]
        if missing:
            raise Refused(user_id, missing)
        self.say("ok", "administrator", f"holds the {len(ADMIN_PRIVILEGES)} privileges connect needs")

    def business_unit(self) -> str:
        """The chosen business unit's id (the root one when none is named)."""
        name = self.target.business_unit
        where = f"name eq {literal(name)}" if name else "_parentbusinessunitid_value eq null"
        rows = self.api.rows("businessunits", "businessunitid,name", where)
        if not rows:
            raise ConnectError(f"no business unit named {name!r}")
        self.say("ok", "business unit", f"{rows[0]['name']} ({rows[0]['businessunitid']})")
        return str(rows[0]["businessunitid"])

    # -- 2. publisher and solution -----------------------------------------------------------------

    def publisher_and_solution(self) -> None:
        """Make sure the `hnt` publisher and the solution the columns and key go into exist."""
        rows = self.api.rows(
            "publishers",
            "publisherid,uniquename,customizationprefix",
            f"uniquename eq {literal(PUBLISHER['uniquename'])}",
        )
        if rows and rows[0].get("customizationprefix") != PUBLISHER["customizationprefix"]:
            raise ConnectError(
                f"publisher {PUBLISHER['uniquename']!r} has prefix {rows[0].get('customizationprefix')!r}, "
                f"not {PUBLISHER['customizationprefix']!r}; the hnt_* columns need the latter"
            )
        publisher_id = str(rows[0]["publisherid"]) if rows else ""
        if rows:
            self.say("ok", "publisher", f"{PUBLISHER['uniquename']} (prefix {PUBLISHER['customizationprefix']})")
        else:
            self.say("create", "publisher", f"{PUBLISHER['uniquename']} (prefix {PUBLISHER['customizationprefix']})")
            if not self.dry_run:
                created = self.api.call(
                    "POST", "publishers", body=PUBLISHER, headers={"Prefer": "return=representation"}
                )
                publisher_id = str(created["publisherid"])
        solutions = self.api.rows("solutions", "solutionid,uniquename", f"uniquename eq {literal(SOLUTION)}")
        if solutions:
            self.say("ok", "solution", SOLUTION)
            return
        self.say("create", "solution", f"{SOLUTION} (unmanaged, publisher {PUBLISHER['uniquename']})")
        if self.dry_run:
            return
        body = {
            "uniquename": SOLUTION,
            "friendlyname": "Hunter lead push",
            "version": "1.0.0.0",
            "publisherid@odata.bind": f"/publishers({publisher_id})",
        }
        self.api.call("POST", "solutions", body=body)

    # -- 3. columns and key ------------------------------------------------------------------------

    def columns(self) -> None:
        """Create each missing `hnt_*` column in the solution."""
        for column in COLUMNS:
            path = f"{LEAD}/Attributes(LogicalName='{column.logical_name}')"
            found = self.api.call("GET", path, {"$select": "LogicalName"}, missing_ok=True)
            if found is not None:
                self.say("ok", f"column {column.logical_name}", "")
                continue
            self.say("create", f"column {column.logical_name}", column.definition["@odata.type"].rsplit(".", 1)[-1])
            if self.dry_run:
                continue
            body = {
                **column.definition,
                "SchemaName": column.schema_name,
                "DisplayName": _label(column.label),
                "Description": _label(f"Hunter: {column.label.lower()} of the company."),
                "RequiredLevel": {"Value": "None", "CanBeChanged": True},
            }
            self.api.call("POST", f"{LEAD}/Attributes", body=body, headers={"MSCRM.SolutionUniqueName": SOLUTION})

    def _domain_key(self) -> dict[str, Any] | None:
        answer = self.api.call("GET", f"{LEAD}/Keys", {"$select": "LogicalName,KeyAttributes,EntityKeyIndexStatus"})
        return next(
            (k for k in answer.get("value", []) if [a.lower() for a in k.get("KeyAttributes", [])] == [KEY_COLUMN]),
            None,
        )

    def key(self) -> bool:
        """Create the alternate key on hnt_domain when missing; True when its index is not Active yet."""
        key = self._domain_key()
        if key is None:
            self.say("create", "key hnt_domainkey", f"alternate key on {KEY_COLUMN}")
            if not self.dry_run:
                body = {"SchemaName": KEY_SCHEMA_NAME, "DisplayName": _label("Domain"), "KeyAttributes": [KEY_COLUMN]}
                self.api.call("POST", f"{LEAD}/Keys", body=body, headers={"MSCRM.SolutionUniqueName": SOLUTION})
            return True
        status = str(key.get("EntityKeyIndexStatus"))
        if status == "Failed":
            raise ConnectError(
                f"the index of key {key.get('LogicalName')} is Failed (duplicate hnt_domain values?): remove the duplicates, "
                "then reactivate the key (Power Apps: Tables > Lead > Keys), and run connect again"
            )
        self.say("ok" if status == "Active" else "wait", f"key {key.get('LogicalName')}", f"index {status}")
        return status != "Active"

    def wait_for_key(self) -> None:
        """Poll the key's EntityKeyIndexStatus until Active, printing each change; raises on Failed
        or after `key_timeout` seconds."""
        started = time.monotonic()
        last = ""
        while True:
            key = self._domain_key()
            status = str(key.get("EntityKeyIndexStatus")) if key else "missing"
            elapsed = time.monotonic() - started
            if status != last:
                self.say("wait", "key index", f"{status} after {elapsed:.1f} s")
                last = status
            if status == "Active":
                return
            if status in ("Failed", "missing"):
                raise ConnectError(
                    f"the key index is {status}: see the key under Tables > Lead > Keys, then run connect again"
                )
            if elapsed > self.key_timeout:
                raise ConnectError(
                    f"the key index is still {status} after {self.key_timeout:.0f} s; run connect again later"
                )
            time.sleep(self.poll_seconds)

    # -- 4-5. application user, role, assignment ----------------------------------------------------

    def application_user(self, business_unit: str) -> str | None:
        """The application user's id (created when missing); None in a dry run that would create it."""
        appid = self.target.application_id
        rows = self.api.rows("systemusers", "systemuserid,_businessunitid_value", f"applicationid eq {appid}")
        if rows:
            where = str(rows[0].get("_businessunitid_value"))
            note = (
                ""
                if where == business_unit
                else f" (in business unit {where}, not the chosen one: move it in the admin center)"
            )
            self.say("ok", "application user", f"{appid}{note}")
            return str(rows[0]["systemuserid"])
        self.say("create", "application user", f"{appid} in business unit {business_unit}")
        if self.dry_run:
            return None
        body = {"applicationid": appid, "businessunitid@odata.bind": f"/businessunits({business_unit})"}
        created = self.api.call("POST", "systemusers", body=body, headers={"Prefer": "return=representation"})
        return str(created["systemuserid"])

    def role(self, business_unit: str) -> str | None:
        """The role's id, created or corrected to hold exactly APP_PRIVILEGES at the chosen depth."""
        name = self.target.role_name
        rows = self.api.rows(
            "roles", "roleid,name", f"name eq {literal(name)} and _businessunitid_value eq {business_unit}"
        )
        wanted = dict.fromkeys(APP_PRIVILEGES, self.target.depth)
        if not rows:
            self.say("create", "role", f"{name}: {', '.join(APP_PRIVILEGES)} at {self.target.depth}")
            if self.dry_run:
                return None
            body = {"name": name, "businessunitid@odata.bind": f"/businessunits({business_unit})"}
            role_id = str(
                self.api.call("POST", "roles", body=body, headers={"Prefer": "return=representation"})["roleid"]
            )
            held: dict[str, tuple[str, str]] = {}
        else:
            role_id = str(rows[0]["roleid"])
            answer = self.api.call("GET", f"roles({role_id})/Microsoft.Dynamics.CRM.RetrieveRolePrivilegesRole()")
            held = {
                str(p["PrivilegeName"]): (_depth_name(p.get("Depth")), str(p["PrivilegeId"]))
                for p in answer.get("RolePrivileges", [])
            }
        extra = sorted(set(held) - set(wanted))
        wrong = sorted(n for n in wanted if n not in held or held[n][0] != wanted[n])
        if rows and not extra and not wrong:
            self.say("ok", "role", f"{name}: exactly {', '.join(APP_PRIVILEGES)} at {self.target.depth}")
            return role_id
        for privilege in extra:
            self.say("remove", "role privilege", f"{privilege} ({held[privilege][0]})")
            if not self.dry_run:
                self.api.call(
                    "POST",
                    f"roles({role_id})/Microsoft.Dynamics.CRM.RemovePrivilegeRole",
                    body={"PrivilegeId": held[privilege][1]},
                )
        if wrong:
            self.say(
                "set",
                "role privileges",
                ", ".join(f"{n} {held[n][0] if n in held else '-'} → {wanted[n]}" for n in wrong),
            )
            if not self.dry_run:
                self._add_privileges(role_id, business_unit, {n: wanted[n] for n in wrong})
        return role_id

    def _add_privileges(self, role_id: str, business_unit: str, privileges: dict[str, str]) -> None:
        where = " or ".join(f"name eq {literal(n)}" for n in privileges)
        ids = {str(r["name"]): str(r["privilegeid"]) for r in self.api.rows("privileges", "privilegeid,name", where)}
        absent = sorted(set(privileges) - set(ids))
        if absent:
            raise ConnectError(f"this org has no privilege named {', '.join(absent)}")
        body = {
            "Privileges": [
                {"Depth": depth, "PrivilegeId": ids[name], "BusinessUnitId": business_unit}
                for name, depth in privileges.items()
            ]
        }
        self.api.call("POST", f"roles({role_id})/Microsoft.Dynamics.CRM.AddPrivilegesRole", body=body)

    def assignment(self, user_id: str | None, role_id: str | None) -> None:
        """Assign the role to the application user unless it holds it already."""
        if user_id is not None and role_id is not None:
            path = f"systemusers({user_id})/systemuserroles_association"
            held = self.api.call("GET", path, {"$select": "roleid,name"}).get("value", [])
            others = sorted(str(r.get("name") or r.get("roleid")) for r in held if str(r.get("roleid")) != role_id)
            if others:
                # Not removed: another integration may rely on them; least privilege needs them gone.
                self.say(
                    "note",
                    "other roles",
                    f"the application user also holds {', '.join(others)}: remove them unless needed",
                )
            if any(str(r.get("roleid")) == role_id for r in held):
                self.say("ok", "role assignment", f"{self.target.role_name} → application user")
                return
        self.say("assign", "role assignment", f"{self.target.role_name} → application user")
        if not self.dry_run and user_id is not None and role_id is not None:
            ref = {"@odata.id": f"{self.api.api}roles({role_id})"}
            self.api.call("POST", f"systemusers({user_id})/systemuserroles_association/$ref", body=ref)


def _depth_name(value: Any) -> str:
    """A `PrivilegeDepth` as its name, whether the answer spells it by name or number."""
    if isinstance(value, int) and 0 <= value < len(DEPTHS):
        return DEPTHS[value]
    return str(value)


# -- the command ---------------------------------------------------------------------------------------


def admin_token(
    base_url: str,
    tenant_id: str,
    how: str,
    authority_host: str = PUBLIC_AUTHORITY,
    prompt: Callable[[str, str, Any], None] | None = None,
) -> Callable[[], str]:
    """A token function for the administrator, signed in with azure-identity: `device-code`
    (prints a code to enter at the verification page; `prompt` replaces the printing) or
    `azure-cli` (`az login`). `authority_host` other than Microsoft's (a sovereign cloud, the local
    simulator) skips MSAL's instance discovery, which only Microsoft's authority answers."""
    from azure.identity import AzureCliCredential, DeviceCodeCredential

    if how == "azure-cli":
        credential: Any = AzureCliCredential(tenant_id=tenant_id)
    else:
        options: dict[str, Any] = {"prompt_callback": prompt} if prompt else {}
        credential = DeviceCodeCredential(
            tenant_id=tenant_id or None,
            authority=authority_host,
            disable_instance_discovery=authority_host.rstrip("/") != PUBLIC_AUTHORITY,
            **options,
        )
    scope = base_url.rstrip("/") + "/.default"
    return lambda: str(credential.get_token(scope).token)


def smoke(env: Mapping[str, str], out: TextIO) -> bool:
    """The smoke test as the app, with one test lead; skipped (True) where this machine cannot
    sign in as the app (a managed identity outside Azure)."""
    from shared import smoketest

    if env.get("HUNTER_D365_AUTH_MODE") == "managed_identity" and not env.get("IDENTITY_ENDPOINT"):
        print(
            "  skip           smoke test             the managed identity signs in only inside Azure: "
            "GET /api/healthz/ready on the deployed app, then push one lead",
            file=out,
        )
        return True
    print("connect: smoke test as the app", file=out)
    return smoketest.run(env, push_test_lead=True, out=out)


def application_id(env: Mapping[str, str]) -> str:
    """The app identity's client id: the managed identity's in managed_identity mode, else the registration's."""
    if env.get("HUNTER_D365_AUTH_MODE") == "managed_identity":
        return env.get("HUNTER_MANAGED_IDENTITY_CLIENT_ID", "")
    return env.get("HUNTER_D365_CLIENT_ID", "")


def main(argv: list[str] | None = None, token: Callable[[], str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run `connect`; exit status 0 connected (or planned), 1 failed, 2 refused for missing rights.
    `token` replaces the interactive sign-in (tests)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    parser.add_argument("--org", help="the Dataverse URL (default: HUNTER_D365_BASE_URL)")
    parser.add_argument("--application-id", help="the app identity's client id (default: from the settings)")
    parser.add_argument("--business-unit", default="", help="business unit name (default: the root one)")
    parser.add_argument("--depth", default="Global", choices=DEPTHS, help="depth of the lead privileges")
    parser.add_argument("--auth", default="device-code", choices=("device-code", "azure-cli"))
    parser.add_argument("--tenant", help="Entra ID tenant (default: HUNTER_D365_TENANT_ID)")
    parser.add_argument(
        "--authority-host", help="Entra ID authority for the device code (default: HUNTER_D365_AUTHORITY_HOST)"
    )
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke test at the end")
    parser.add_argument("--key-timeout", type=float, default=900.0, help="seconds to wait for the key index")
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument(
        "--settings", default="local.settings.json", help="Values to use where the environment has none"
    )
    args = parser.parse_args(argv)
    env = dict(os.environ)
    path = Path(args.settings)
    if path.exists():
        env = {**json.loads(path.read_text()).get("Values", {}), **env}
    base_url = args.org or env.get("HUNTER_D365_BASE_URL", "")
    appid = (args.application_id or application_id(env)).lower()
    if not base_url or not appid:
        print("connect: needs --org (or HUNTER_D365_BASE_URL) and --application-id (or the app's settings)", file=out)
        return 1
    authority = args.authority_host or env.get("HUNTER_D365_AUTHORITY_HOST") or PUBLIC_AUTHORITY
    token = token or admin_token(base_url, args.tenant or env.get("HUNTER_D365_TENANT_ID", ""), args.auth, authority)
    target = Target(appid, args.business_unit, args.depth)
    connector = Connector(WebApi(base_url, token), target, args.dry_run, out, args.key_timeout, args.poll_seconds)
    try:
        changes = connector.run()
    except Refused as exc:
        print(f"REFUSED  {exc}", file=out)
        return 2
    except ConnectError as exc:
        print(f"FAIL  {exc}", file=out)
        return 1
    if args.dry_run:
        print(f"connect: {changes} change(s) planned; run without --dry-run to make them", file=out)
        return 0
    print(
        f"connect: {changes} change(s) made; the org is connected "
        "(set HUNTER_D365_DOMAIN_KEY=true / d365DomainKey=true: the key is Active)",
        file=out,
    )
    if args.no_smoke:
        return 0
    return 0 if smoke({**env, "HUNTER_D365_BASE_URL": base_url}, out) else 1


if __name__ == "__main__":
    raise SystemExit(main())
