"""Grid storage from a Dask task on a drone: gfal2's command-line tools, called from Python.

The drone image carries gfal2 with its XRootD, HTTP and file plugins, but its Python
bindings belong to the image's system ``python3``, not to the Dask interpreter a task runs
in (a different minor version). These helpers therefore run ``gfal-copy`` and ``gfal-cat``
(gfal2-util, on the image's ``PATH``) in a child process. They authenticate with the X.509
proxy the drone pilot checked and exported as ``X509_USER_PROXY`` (``PILOT_X509_PROXY`` in
the machine type's settings) and trust the CAs in ``X509_CERT_DIR``, by default
``/etc/grid-security/certificates``; nothing here handles credentials itself.

In a task::

    from tardis_sge_dask import grid

    def analyse(url):
        events = grid.read_bytes(url)                    # root://, davs://, https://, file://
        grid.write_bytes(url + ".summary", summarise(events))

See docs/user-guide.md ("Grid storage from a task").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: seconds a single transfer may take before it counts as failed
DEFAULT_TIMEOUT = 600


class GridError(RuntimeError):
    """A gfal2 command failed; the message holds the command's own explanation."""

    def __init__(self, command: list[str], returncode: int, stderr: str):
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        reason = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
        super().__init__(f"{command[0]} exited {returncode}: {reason}")


def proxy() -> str | None:
    """The X.509 proxy a grid client in this process would present, if any."""
    return os.environ.get("X509_USER_PROXY") or None


def _run(argv: list[str], timeout: float) -> bytes:
    if shutil.which(argv[0]) is None:
        raise GridError(argv, 127, f"{argv[0]} is not on PATH (the drone image has gfal2-util)")
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise GridError(argv, -1, f"no answer within {timeout} s") from exc
    if done.returncode != 0:
        raise GridError(argv, done.returncode, done.stderr.decode(errors="replace"))
    return done.stdout


def copy(
    source: str, destination: str, *, overwrite: bool = False, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """``gfal-copy SOURCE DESTINATION``: any two URLs gfal2 has a plugin for."""
    _run(
        [
            "gfal-copy",
            *(["--force"] if overwrite else []),
            "--timeout",
            str(int(timeout)),
            source,
            destination,
        ],
        timeout + 30,
    )


def read_bytes(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """The whole content of the file at ``url`` (``gfal-cat``)."""
    return _run(["gfal-cat", url], timeout)


def write_bytes(
    url: str, data: bytes, *, overwrite: bool = True, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Store ``data`` at ``url``: written to the task's scratch ($TMPDIR), then copied."""
    with tempfile.TemporaryDirectory(prefix="grid-") as directory:
        local = Path(directory) / "upload"
        local.write_bytes(data)
        copy(local.as_uri(), url, overwrite=overwrite, timeout=timeout)
