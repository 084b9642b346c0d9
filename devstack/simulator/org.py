"""The simulated Dataverse organization's setup: business units, users (people and application
users), security roles and their privileges, publishers and solutions, the `hnt_*` columns of
`lead` and its alternate keys with their index status. `security.py` and `metadata.py` serve it
over the Web API; `shared/connect.py` is the command that sets a real org up the same way.

What each piece imitates (Microsoft Learn):
- "systemuser table/entity reference" and "Manage application users in the Power Platform admin
  center": an application user is a `systemuser` with `applicationid` (the Entra ID app's or
  managed identity's client id) in a business unit; it reaches data only through its roles.
  https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/systemuser
- "Security concepts in Microsoft Dataverse" and the `RolePrivilege` / `PrivilegeDepth` Web API
  types (Basic 0, Local 1, Deep 2, Global 3): a role grants privileges (`prvCreateLead`…) at a depth;
  a call whose caller lacks one is refused with 403 `0x80040220` "Principal user … is missing
  prvX privilege".
  https://learn.microsoft.com/power-apps/developer/data-platform/security-concepts
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/privilegedepth
- "EntityKeyIndexStatus EnumType": a new key's index goes Pending → InProgress → Active (or Failed);
  the key is usable only once Active.
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/entitykeyindexstatus
- "Web API table schema operations sample": a column's schema name carries the customization prefix
  of the publisher of the solution named in `MSCRM.SolutionUniqueName`.
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/web-api-metadata-operations-sample

The org starts *connected* (what the rest of the stack expects: the app's client id and the
managed identity are application users with a role that grants the lead privileges, the columns
and the Active key exist); `make_empty()` turns it into a fresh org for the `connect` tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator

DEPTHS = ("Basic", "Local", "Deep", "Global")
# The privileges the simulated org knows: the lead table's and the ones `connect` needs from its
# administrator (names as Dataverse spells them).
LEAD_PRIVILEGES = ("prvCreateLead", "prvReadLead", "prvWriteLead", "prvDeleteLead", "prvAppendLead", "prvAssignLead")
ADMIN_PRIVILEGES = (
    "prvReadUser",
    "prvCreateUser",
    "prvWriteUser",
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
ALL_PRIVILEGES = LEAD_PRIVILEGES + ADMIN_PRIVILEGES
# Entra ID object ids of the directory's test users (directory.TEST_USERS): the admin is a System
# Administrator in Dataverse; the viewer a Basic user without any of the administrator's privileges.
ADMIN_OID = "0b5c1e5a-1f0e-4c2a-9a61-5d7e8f9a0b33"
VIEWER_OID = "0b5c1e5a-1f0e-4c2a-9a61-5d7e8f9a0b22"
# The lead columns a fresh org lacks (Hunter's), with what Dataverse would hold for them.
CUSTOM_COLUMNS = ("hnt_domain", "hnt_segment", "hnt_finalscore", "hnt_priority")
DEFAULT_PREFIX = "new"  # the default publisher's customization prefix in a new environment


def privilege_id(name: str) -> str:
    """The (stable) id of privilege `name` in the simulated org."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "privilege:" + name.lower()))


@dataclass
class Role:
    """A security role: name, business unit and {privilege name: depth}."""

    roleid: str
    name: str
    businessunitid: str
    privileges: dict[str, str] = field(default_factory=dict)


@dataclass
class User:
    """A systemuser: a person (`aad_object_id`) or an application user (`applicationid`)."""

    systemuserid: str
    businessunitid: str
    fullname: str
    applicationid: str | None = None
    aad_object_id: str | None = None
    roles: set[str] = field(default_factory=set)


@dataclass
class Key:
    """An alternate key on `lead` and when its index job started (status is derived from time)."""

    logical_name: str
    schema_name: str
    attributes: list[str]
    created: float
    fails: bool = False
    announced: bool = False  # its Active status has been put in force (`Org.tick`)


class Org:
    """The org's users, roles, solutions and `lead` metadata, behind one lock."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._lock = threading.RLock()
        self.root_bu = str(uuid.uuid5(uuid.NAMESPACE_DNS, "bu." + sim.tenant_id))
        self.business_units: dict[str, dict[str, Any]] = {
            self.root_bu: {"businessunitid": self.root_bu, "name": "hunter-org", "_parentbusinessunitid_value": None},
        }
        sales = str(uuid.uuid5(uuid.NAMESPACE_DNS, "bu.sales." + sim.tenant_id))
        self.business_units[sales] = {
            "businessunitid": sales,
            "name": "Sales",
            "_parentbusinessunitid_value": self.root_bu,
        }
        self.users: dict[str, User] = {}
        self.roles: dict[str, Role] = {}
        self.publishers: dict[str, dict[str, Any]] = {}
        self.solutions: dict[str, dict[str, Any]] = {}
        self.columns: set[str] = set(CUSTOM_COLUMNS)
        self.keys: dict[str, Key] = {
            "hnt_domainkey": Key("hnt_domainkey", "hnt_DomainKey", ["hnt_domain"], 0.0, announced=True)
        }
        # Seconds a new key's index spends Pending, then InProgress (Dataverse runs a system job).
        self.key_delays = (0.2, 0.4)
        self.fail_next_key = False
        # Device codes of people signing in to a command line tool (devicecode.py).
        self.device_codes: dict[str, Any] = {}
        admin_role = self.add_role("System Administrator", dict.fromkeys(ALL_PRIVILEGES, "Global"))
        basic_role = self.add_role("Basic User", {"prvReadLead": "Basic"})
        self._person(ADMIN_OID, "Ada Admin", admin_role)
        self._person(VIEWER_OID, "Vic Viewer", basic_role)
        app_role = self.add_role("Hunter lead push (seeded)", dict.fromkeys(LEAD_PRIVILEGES, "Global"))
        for appid in (sim.client_id, sim.mi_client_id):
            self.add_application_user(appid, self.root_bu, roles={app_role.roleid})

    # -- setup of the two shapes -------------------------------------------------------------------

    def _person(self, oid: str, name: str, role: Role) -> None:
        user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "systemuser:" + oid))
        self.users[user_id] = User(user_id, self.root_bu, name, aad_object_id=oid, roles={role.roleid})

    def make_empty(self) -> None:
        """A fresh org: no application users, no roles but the built-in ones, no Hunter publisher or
        solution, no `hnt_*` columns, no alternate key on `lead`."""
        with self._lock:
            self.users = {k: u for k, u in self.users.items() if u.applicationid is None}
            self.roles = {k: r for k, r in self.roles.items() if r.name in ("System Administrator", "Basic User")}
            self.publishers.clear()
            self.solutions.clear()
            self.columns.clear()
            self.keys.clear()
            self._sim.alternate_key = False

    # -- principals and privileges -----------------------------------------------------------------

    def principal(self, claims: dict[str, Any]) -> User | None:
        """The systemuser a token stands for: a person by `oid` when the token is delegated (`scp`),
        else the application user of `appid`/`azp`."""
        with self._lock:
            if claims.get("scp"):
                return next((u for u in self.users.values() if u.aad_object_id == claims.get("oid")), None)
            appid = claims.get("appid") or claims.get("azp")
            return next((u for u in self.users.values() if u.applicationid == appid), None)

    def held(self, user: User) -> dict[str, str]:
        """{privilege: deepest depth} that `user` holds through its roles."""
        with self._lock:
            out: dict[str, str] = {}
            for role_id in user.roles:
                role = self.roles.get(role_id)
                for name, depth in (role.privileges if role else {}).items():
                    if DEPTHS.index(depth) >= DEPTHS.index(out.get(name, "Basic")):
                        out[name] = depth
            return out

    def missing(self, user: User, privilege: str) -> bool:
        """True when `user` lacks `privilege`."""
        return privilege not in self.held(user)

    # -- users and roles ---------------------------------------------------------------------------

    def add_application_user(self, appid: str, businessunitid: str, roles: set[str] | None = None) -> User:
        """A new application user for `appid` (its id derives from `appid`, as tokens' `oid` does)."""
        with self._lock:
            user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, appid))
            user = User(user_id, businessunitid, f"# {appid}", applicationid=appid, roles=set(roles or ()))
            self.users[user_id] = user
            return user

    def add_role(self, name: str, privileges: dict[str, str], businessunitid: str | None = None) -> Role:
        """A new role in `businessunitid` (the root by default)."""
        with self._lock:
            role = Role(str(uuid.uuid4()), name, businessunitid or self.root_bu, dict(privileges))
            self.roles[role.roleid] = role
            return role

    def role_named(self, name: str) -> Role | None:
        """The role called `name`, or None."""
        with self._lock:
            return next((r for r in self.roles.values() if r.name == name), None)

    def application_user(self, appid: str) -> User | None:
        """The application user of `appid`, or None."""
        with self._lock:
            return next((u for u in self.users.values() if u.applicationid == appid), None)

    # -- lead metadata -----------------------------------------------------------------------------

    def prefix_for(self, solution_unique_name: str | None) -> str | None:
        """The customization prefix components get in `solution_unique_name` (the default publisher's
        without one); None when there is no such solution."""
        if not solution_unique_name:
            return DEFAULT_PREFIX
        with self._lock:
            solution = next((s for s in self.solutions.values() if s["uniquename"] == solution_unique_name), None)
            publisher = self.publishers.get(solution["_publisherid_value"]) if solution else None
            return None if publisher is None else str(publisher["customizationprefix"])

    def has_column(self, name: str) -> bool:
        """True when `lead` has column `name` (every standard column does)."""
        with self._lock:
            return not name.startswith("hnt_") or name in self.columns

    def key_status(self, key: Key) -> str:
        """The key's `EntityKeyIndexStatus` now."""
        age = time.time() - key.created
        pending, in_progress = self.key_delays
        if age < pending:
            return "Pending"
        if age < pending + in_progress:
            return "InProgress"
        return "Failed" if key.fails else "Active"

    def add_key(self, schema_name: str, attributes: list[str]) -> Key:
        """A new alternate key on `lead`; its index job starts now."""
        with self._lock:
            key = Key(schema_name.lower(), schema_name, list(attributes), time.time(), fails=self.fail_next_key)
            self.fail_next_key = False
            self.keys[key.logical_name] = key
            return key

    def tick(self) -> None:
        """Let time pass for the key index jobs: when the `hnt_domain` key first reads Active, the
        key is in force (`Simulator.alternate_key`, which `configure` may still switch off)."""
        with self._lock:
            for key in self.keys.values():
                if not key.announced and key.attributes == ["hnt_domain"] and self.key_status(key) == "Active":
                    key.announced = True
                    self._sim.alternate_key = True
