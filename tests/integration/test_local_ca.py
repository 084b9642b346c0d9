"""One local CA per user, kept across runs (devstack/localca.py), and `make trust`'s NSS half
(devstack/trust.py) against a temporary home: the CA is made once with its key 0600, every start
issues a new leaf from the same CA, and `--check` tells a trusted CA from an untrusted one."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from devstack import localca, trust
from devstack.simulator import Simulator
from tests.conftest import ROOT


def test_the_ca_is_kept_across_runs_with_a_private_key_only_the_user_reads(tmp_path: Path) -> None:
    directory = localca.ca_dir({"HOME": str(tmp_path)})
    assert directory == tmp_path / ".local" / "share" / "hunter-d365"
    assert localca.ca_dir({"HOME": "/x", "XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "hunter-d365"
    assert localca.ca_dir({"DEVSTACK_CA_DIR": str(tmp_path / "ca")}) == tmp_path / "ca"
    first = localca.load_or_create(directory)
    assert (directory / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700
    assert localca.load_or_create(directory).cert_pem.bytes() == first.cert_pem.bytes()


def test_every_start_issues_a_new_leaf_from_the_same_ca(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    leaves = []
    for run in ("one", "two"):
        with Simulator(state_dir=tmp_path / run, ca_dir=directory) as sim:
            assert sim.ca_path.read_bytes() == localca.cert_path(directory).read_bytes()
            # Python clients trust it through the bundle (REQUESTS_CA_BUNDLE), as before.
            assert requests.get(f"{sim.base_url}/_admin/leads", verify=str(sim.bundle_path), timeout=10).ok
            leaves.append(ssl.get_server_certificate((sim.host, sim.port)))
    assert leaves[0] != leaves[1]


def test_make_trust_adds_the_ca_to_the_nss_database_of_the_home_it_runs_in(tmp_path: Path) -> None:
    if shutil.which("certutil") is None:
        pytest.skip("NSS's certutil is missing (make nss-tools installs libnss3-tools as root)")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME", "DEVSTACK_CA_DIR")} | {
        "HOME": str(tmp_path)
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "devstack.trust", "--no-system", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert run("--check").returncode == 1  # no CA yet
    done = run()
    assert done.returncode == 0, done.stderr
    assert "trusted by  Chromium/Chrome (~/.pki/nssdb)" in done.stdout
    assert run("--check").returncode == 0
    assert "(already)" in run().stdout  # idempotent
    pem = localca.cert_path(localca.ca_dir({"HOME": str(tmp_path)})).read_bytes()
    assert trust.missing(pem, tmp_path, system=False) == []
    assert trust.missing(pem, tmp_path / "elsewhere", system=False) == ["Chromium/Chrome (~/.pki/nssdb)"]


def test_make_trust_also_reaches_every_firefox_profile(tmp_path: Path) -> None:
    if shutil.which("certutil") is None:
        pytest.skip("NSS's certutil is missing (make nss-tools installs libnss3-tools as root)")
    profile = tmp_path / ".mozilla" / "firefox" / "abcd1234.default-release"
    profile.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{profile}", "--empty-password"], check=True)
    directory = localca.ca_dir({"HOME": str(tmp_path)})
    done, failed = trust.trust(directory, tmp_path, system=False)
    assert failed == [] and done == ["Chromium/Chrome (~/.pki/nssdb)", "Firefox profile abcd1234.default-release"]
    assert trust.missing(localca.cert_path(directory).read_bytes(), tmp_path, system=False) == []
