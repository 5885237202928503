"""The tests' grid storage element and credentials (services/xrootd-up.sh).

Real: Debian's XRootD server requiring GSI (X.509) authentication, the test CA and user
certificates the services script made, and RFC 3820 proxies made here from them with
``voms-proxy-fake``. Nothing is a file:// shortcut: every read and write a test checks
goes through the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

STATE = Path(os.environ.get("GRID_STATE", "/var/lib/tardis-sge-dask/grid"))
PORT = int(os.environ.get("XROOTD_PORT", "1094"))
ENDPOINT = f"root://localhost:{PORT}"
CERT_DIR = STATE / "certificates"
#: the server's oss.localroot: the namespace's /data is STORAGE/data
STORAGE = STATE / "storage"
SERVER_LOG = STATE / "run" / "xrootd.log"
#: what the grid-mapfile maps the pilot's DN to, and what the authorization database admits
ACCOUNT = "gridpilot"
#: where drone.def's %environment points X509_CERT_DIR; the tests bind the test CA there
IMAGE_CERT_DIR = "/etc/grid-security/certificates"


def url(path: str) -> str:
    return f"{ENDPOINT}//data/{path.lstrip('/')}"


def make_proxy(
    path: Path,
    owner: str | None = None,
    *,
    user: str = "pilot",
    hours: int = 12,
    past: str | None = None,
) -> Path:
    """An RFC 3820 proxy of the test user ``user`` (pilot or stranger) at ``path``.

    ``past`` ("H:MM") starts its validity that long ago: ``hours=1, past="2:00"`` is an
    expired proxy, ``hours=1, past="0:50"`` one with about ten minutes left.
    """
    credentials = STATE / "users" / user
    return _fake_proxy(
        path, owner, credentials / "usercert.pem", credentials / "userkey.pem", hours, past
    )


def untrusted_proxy(directory: Path, owner: str | None = None) -> Path:
    """A proxy with the pilot's very DN, from a CA of its own that the server does not trust."""
    work = Path(tempfile.mkdtemp(prefix="untrusted-ca-", dir=directory))
    subject = "/DC=test/DC=tardis-sge-dask"

    def openssl(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, cwd=work)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-subj",
        f"{subject}/CN=tardis-sge-dask Test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:true",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"{subject}/CN=Drone Pilot",
        "-keyout",
        "userkey.pem",
        "-out",
        "user.csr",
    )
    # a v3 certificate, like a real user's: voms-proxy-fake refuses to extend a v1 one
    (work / "user.ext").write_text(
        "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    openssl(
        "x509",
        "-req",
        "-days",
        "30",
        "-in",
        "user.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "11",
        "-extfile",
        "user.ext",
        "-out",
        "usercert.pem",
    )
    (work / "userkey.pem").chmod(0o400)
    return _fake_proxy(
        directory / "untrusted.proxy", owner, work / "usercert.pem", work / "userkey.pem", 12, None
    )


def _fake_proxy(
    path: Path, owner: str | None, cert: Path, key: Path, hours: int, past: str | None
) -> Path:
    argv = [
        "voms-proxy-fake",
        "-q",
        "-rfc",
        "-hours",
        str(hours),
        "-cert",
        str(cert),
        "-key",
        str(key),
        "-certdir",
        str(CERT_DIR),
        "-out",
        str(path),
    ]
    if past:
        argv += ["-pastproxy", past]
    made = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and path.exists(), made.stdout + made.stderr
    # grid clients refuse a proxy others can read, as they do on a worker node
    path.chmod(0o600)
    if owner:
        shutil.chown(path, owner, owner)
    return path


def client_environment(proxy: Path) -> dict[str, str]:
    return {**os.environ, "X509_USER_PROXY": str(proxy), "X509_CERT_DIR": str(CERT_DIR)}


def read(path: str, proxy: Path) -> bytes:
    """The file at /data/PATH as a user reads it with xrdcp and the proxy (on the host)."""
    done = subprocess.run(
        ["xrdcp", "--silent", "--force", url(path), "-"],
        capture_output=True,
        env=client_environment(proxy),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def write(path: str, data: bytes, proxy: Path) -> None:
    """Put a file at /data/PATH through the server (xrdcp from stdin, on the host)."""
    done = subprocess.run(
        ["xrdcp", "--silent", "--force", "-", url(path)],
        input=data,
        capture_output=True,
        env=client_environment(proxy),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")


def server_answers(scratch: Path) -> bool:
    """An authenticated stat of /data succeeds (what services/xrootd-up.sh waits for)."""
    if shutil.which("xrdfs") is None or shutil.which("voms-proxy-fake") is None:
        return False
    if not (STATE / "users" / "pilot" / "usercert.pem").exists():
        return False
    proxy = make_proxy(scratch / "probe.proxy")
    try:
        done = subprocess.run(
            ["xrdfs", ENDPOINT, "stat", "/data"],
            capture_output=True,
            env=client_environment(proxy),
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def server_log_since(offset: int) -> str:
    """What the server logged after ``offset`` bytes (its acc.audit lines say who did what)."""
    with SERVER_LOG.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def server_log_size() -> int:
    return SERVER_LOG.stat().st_size
