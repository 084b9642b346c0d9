"""`python -m devstack.trust` (`make trust`): trust this user's local CA (devstack/localca.py), as
`dotnet dev-certs https --trust` and `mkcert -install` do, in

- the system store: Debian/Ubuntu's `/usr/local/share/ca-certificates/` + `update-ca-certificates`
  (as root; otherwise through `sudo`, which asks for a password) — curl, wget, most tools;
- NSS databases, with NSS's `certutil` (Debian package libnss3-tools): Chromium's and Chrome's
  `~/.pki/nssdb` (created when missing, as Chromium would), the snap Chromium's, and every Firefox
  profile (Firefox on Linux does not read the system store).

`--no-system` leaves the system store alone (no root needed: browsers read only NSS); `--check`
changes nothing and exits 1 when a store lacks the CA. The CA is made first when there is none, so
trusting before the first `make run` works. Run it again after deleting the CA directory.

The browser tests run this very command with `HOME` pointed at a temporary directory and
`--no-system`, and then start Chromium with that `HOME` (tests/browser/conftest.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devstack import localca

SYSTEM_ANCHORS = Path("/usr/local/share/ca-certificates")
SYSTEM_FILE = "hunter-d365-local-ca.crt"


@dataclass(frozen=True)
class NssDb:
    """One NSS database: `spec` is what `certutil -d` takes (`sql:<dir>` or `dbm:<dir>`)."""

    name: str
    spec: str


def nickname(cert_pem: bytes) -> str:
    """The CA's nickname in NSS: its name and the start of its SHA-256, so that two users' (or two
    generations') CAs never take each other's place."""
    return f"{localca.CA_NAME} {hashlib.sha256(cert_pem).hexdigest()[:12]}"


def nss_databases(home: Path, create: bool = False) -> list[NssDb]:
    """The NSS databases of the user whose home is `home`: Chromium's `~/.pki/nssdb` (listed even
    when missing if `create`, since Chromium makes it on first start), the snap Chromium's, and
    each Firefox profile (`cert9.db`: sql, `cert8.db`: the old dbm format)."""
    found: list[NssDb] = []
    chromium = home / ".pki" / "nssdb"
    if chromium.is_dir() or create:
        found.append(NssDb("Chromium/Chrome (~/.pki/nssdb)", f"sql:{chromium}"))
    snap = home / "snap" / "chromium" / "current" / ".pki" / "nssdb"
    if snap.is_dir():
        found.append(NssDb("Chromium snap", f"sql:{snap}"))
    for profiles in (home / ".mozilla" / "firefox", home / "snap" / "firefox" / "common" / ".mozilla" / "firefox"):
        for profile in sorted(profiles.glob("*")) if profiles.is_dir() else []:
            if (profile / "cert9.db").exists():
                found.append(NssDb(f"Firefox profile {profile.name}", f"sql:{profile}"))
            elif (profile / "cert8.db").exists():
                found.append(NssDb(f"Firefox profile {profile.name}", f"dbm:{profile}"))
    return found


def _certutil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["certutil", *args], capture_output=True, text=True, check=False)


def nss_has(db: NssDb, nick: str) -> bool:
    """True when `db` holds a certificate named `nick`."""
    return _certutil("-L", "-d", db.spec, "-n", nick).returncode == 0


def nss_add(db: NssDb, nick: str, cert: Path) -> str:
    """Add `cert` to `db` as a CA trusted for TLS servers (`-t C,,`), creating an empty database
    first when there is none; returns "" or what certutil said when it failed."""
    directory = Path(db.spec.split(":", 1)[1])
    if db.spec.startswith("sql:") and not (directory / "cert9.db").exists():
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        made = _certutil("-N", "-d", db.spec, "--empty-password")
        if made.returncode != 0:
            return made.stderr.strip() or made.stdout.strip()
    added = _certutil("-A", "-d", db.spec, "-t", "C,,", "-n", nick, "-i", str(cert))
    return "" if added.returncode == 0 else (added.stderr.strip() or added.stdout.strip())


def system_store_present() -> bool:
    """True where the Debian/Ubuntu system store is (update-ca-certificates)."""
    return shutil.which("update-ca-certificates") is not None


def system_has(cert_pem: bytes) -> bool:
    """True when the system store's local anchors hold this CA."""
    anchor = SYSTEM_ANCHORS / SYSTEM_FILE
    return anchor.exists() and anchor.read_bytes().strip() == cert_pem.strip()


def system_add(cert: Path) -> str:
    """Install `cert` as a local anchor and rebuild the system bundle: directly as root, else
    through sudo. Returns "" or why it failed."""
    target = str(SYSTEM_ANCHORS / SYSTEM_FILE)
    steps = [["install", "-D", "-m", "0644", str(cert), target], ["update-ca-certificates"]]
    if os.geteuid() != 0:
        if not shutil.which("sudo"):
            return "not root and no sudo: run `make trust` as root for the system store"
        steps = [["sudo", *step] for step in steps]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return f"{' '.join(step)}: {done.stderr.strip() or done.stdout.strip() or done.returncode}"
    return ""


def missing(cert_pem: bytes, home: Path | None = None, system: bool = True) -> list[str]:
    """The stores that exist here but do not trust the CA yet ([] when it is trusted everywhere):
    the system store (when `system` and present) and Chromium's NSS database (always: it is where
    a browser looks) plus every other NSS database found. Without certutil NSS cannot be read, so
    Chromium's database counts as missing."""
    home = home or Path(os.environ.get("HOME") or Path.home())
    lacking = ["system store"] if system and system_store_present() and not system_has(cert_pem) else []
    nick = nickname(cert_pem)
    for db in nss_databases(home, create=True):
        if shutil.which("certutil") is None or not nss_has(db, nick):
            lacking.append(db.name)
    return lacking


def trust(directory: Path, home: Path, system: bool = True) -> tuple[list[str], list[str]]:
    """Make (if needed) the CA in `directory` and add it to every store; returns (stores now
    trusting it, failures as "store: why")."""
    localca.load_or_create(directory)
    cert = localca.cert_path(directory)
    pem = cert.read_bytes()
    done: list[str] = []
    failed: list[str] = []
    if system and system_store_present():
        if system_has(pem):
            done.append("system store (already)")
        else:
            why = system_add(cert)
            if why:
                failed.append(f"system store: {why}")
            else:
                done.append("system store")
    nick = nickname(pem)
    if shutil.which("certutil") is None:
        failed.append(
            "NSS (Chromium, Firefox): certutil is missing; install it (Debian/Ubuntu: apt-get install "
            "libnss3-tools; Fedora: dnf install nss-tools; `make trust` as root installs it) and run again"
        )
        return done, failed
    for db in nss_databases(home, create=True):
        if nss_has(db, nick):
            done.append(f"{db.name} (already)")
            continue
        why = nss_add(db, nick, cert)
        if why:
            failed.append(f"{db.name}: {why}")
        else:
            done.append(db.name)
    return done, failed


def main(argv: list[str] | None = None) -> int:
    """`make trust`: trust the CA (or, with --check, report); exit 1 on any failure."""
    parser = argparse.ArgumentParser(description="Trust the local development CA (system store and NSS databases)")
    parser.add_argument("--no-system", action="store_true", help="leave the system store alone (browsers only)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a store lacks the CA")
    args = parser.parse_args(argv)
    directory = localca.ca_dir()
    home = Path(os.environ.get("HOME") or Path.home())
    if args.check:
        cert = localca.cert_path(directory)
        lacking = missing(cert.read_bytes(), home, not args.no_system) if cert.exists() else ["every store (no CA yet)"]
        print(f"CA {cert}: " + ("trusted" if not lacking else "not trusted by " + ", ".join(lacking)))
        return 1 if lacking else 0
    done, failed = trust(directory, home, system=not args.no_system)
    print(f"Local CA: {localca.cert_path(directory)} (key 0600 beside it; never share it)")
    for store in done:
        print(f"  trusted by  {store}")
    for failure in failed:
        print(f"  NOT trusted {failure}", file=sys.stderr)
    if not failed:
        print("Restart the browser (close every window) so that it reads the new trust.")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
