"""The local certificate authority of one user, kept across runs, as `dotnet dev-certs https` and
mkcert keep theirs: made once (by `trustme`), stored under the user's data directory, and trusted
once with `make trust` (devstack/trust.py). Every start of the simulator issues fresh leaf
certificates from it, so a browser that trusts the CA trusts every run.

Where it lives, first found: `DEVSTACK_CA_DIR`; `$XDG_DATA_HOME/hunter-d365/`;
`~/.local/share/hunter-d365/` (the XDG default). The directory is 0700, the private key 0600;
nothing here prints or logs the key.

    ca.pem       the CA certificate (public; what `make trust` installs)
    ca-key.pem   its private key (0600)
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Mapping
from pathlib import Path

import trustme

APP_DIR = "hunter-d365"
CA_NAME = "Hunter D365 local development CA"
CERT_FILE = "ca.pem"
KEY_FILE = "ca-key.pem"


def ca_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory of this user's CA (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    if environ.get("DEVSTACK_CA_DIR"):
        return Path(environ["DEVSTACK_CA_DIR"])
    data_home = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local" / "share")
    return Path(data_home) / APP_DIR


def load_or_create(directory: Path) -> trustme.CA:
    """The CA kept in `directory`, made (and kept) first when there is none. Two starts at once
    (the simulator and `make trust`, or two stacks) make one CA between them: the first holds a
    lock on the directory while it writes.

    Raises:
        OSError: the directory cannot be created or the files cannot be read or written.
        ValueError: the files are there but are not a PEM certificate and key.
    """
    cert, key = directory / CERT_FILE, directory / KEY_FILE
    if cert.exists() and key.exists():
        return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cert.exists() and key.exists():  # made by whoever held the lock before us
            return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
        owner = f"{os.environ.get('USER') or os.environ.get('LOGNAME') or 'user'}@{socket.gethostname()}"
        ca = trustme.CA(organization_name=CA_NAME, organization_unit_name=f"{CA_NAME} ({owner})")
        # The key goes to a file created 0600, never with wider permissions even for a moment;
        # the certificate last, so that a certificate on disk always has its key beside it.
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(ca.private_key_pem.bytes())
        key.chmod(0o600)
        cert.write_bytes(ca.cert_pem.bytes())
        return ca


def cert_path(directory: Path | None = None) -> Path:
    """The CA certificate's path (in `directory`, else this user's CA directory)."""
    return (directory or ca_dir()) / CERT_FILE
