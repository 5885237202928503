"""Shared test conventions.

Integration tests ask for a service through a fixture (``sge``, ``slurm``, ``sshd``).
When the service is missing the test is skipped on a developer machine, but under
``CI=true`` it *fails*: CI must never pass by quietly testing nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"


def service_missing(what: str) -> None:
    """Fail under CI, skip elsewhere."""
    message = f"{what} (bring it up with `make services`)"
    if IN_CI:
        pytest.fail(f"CI=true but {message}", pytrace=False)
    pytest.skip(message)


def _command_works(*argv: str) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def sge() -> None:
    """A working Grid Engine: qmaster answers and an execution host reports."""
    if not _command_works("qstat", "-xml") or not _command_works("qconf", "-sel"):
        service_missing("Grid Engine is not reachable")


@pytest.fixture(scope="session")
def slurm() -> None:
    """A working SLURM controller with a usable node."""
    if not _command_works("scontrol", "ping") or not _command_works("sinfo", "-h"):
        service_missing("SLURM is not reachable")


SSHD_DIR = Path(os.environ.get("SSHD_DIR", "/tmp/test-sshd"))


@pytest.fixture(scope="session")
def sshd() -> dict:
    """The test sshd on 127.0.0.1:2222 (services/sshd-up.sh) and a client key for it."""
    key = SSHD_DIR / "id_ed25519"
    if not key.exists() or not _command_works(
        "ssh",
        "-p",
        "2222",
        "-i",
        str(key),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "tardis@127.0.0.1",
        "true",
    ):
        service_missing("the test sshd on 127.0.0.1:2222 is not reachable")
    return {"host": "127.0.0.1", "port": 2222, "username": "tardis", "client_keys": [str(key)]}


class DroneImage(NamedTuple):
    path: Path  #: the directory image (an Apptainer sandbox)
    standin_bin: Path  #: put first on PATH: holds the Apptainer stand-in, `apptainer`


@pytest.fixture(scope="session")
def drone_image() -> DroneImage:
    """The drone test image and the Apptainer stand-in (containers/test-image/build.sh)."""
    image = DroneImage(
        Path(os.environ.get("TSD_TEST_IMAGE", "/var/cache/tardis-sge-dask/drone-image")),
        Path(os.environ.get("TSD_STANDIN_BIN", "/var/cache/tardis-sge-dask/standin-bin")),
    )
    built = (image.path / "opt" / "dask" / "pyvenv.cfg").is_file()
    if not built or not os.access(image.standin_bin / "apptainer", os.X_OK):
        service_missing(
            f"the drone test image {image.path} or its stand-in {image.standin_bin}/apptainer "
            "is not built (`make image`)"
        )
    return image
