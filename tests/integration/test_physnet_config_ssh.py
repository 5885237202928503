"""``configs/physnet.yaml`` with its SSH executors kept, pointed at the local test sshd.

The unit test runs the file with local shells; here the three ``!TardisSSHExecutor`` keep
every key of the production file (host, username, client_keys, known_hosts) and only the
values change to the test sshd, with its host key pinned. The daemon must build the
pipeline, reach the "overlay schedd" over SSH (PHYSnet's schedd is not here, so condor_q
fails there and the source reports the failure and keeps going) and stay up without a traceback.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.helpers.daemon import CobaldDaemon, wait_until
from tests.unit.test_physnet_config import RUN_SECONDS, local_copy

pytestmark = pytest.mark.integration


def pinned_known_hosts(directory: Path) -> Path:
    key = Path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    path = directory / "known_hosts"
    path.write_text(f"[127.0.0.1]:2222 {key[0]} {key[1]}\n")
    return path


def test_physnet_pipeline_runs_with_its_ssh_executors(sshd, tmp_path):
    known_hosts = str(pinned_known_hosts(tmp_path))

    def to_test_sshd(settings: dict) -> dict:
        assert set(settings) == {"host", "username", "client_keys", "known_hosts"}
        return {**settings, **sshd, "known_hosts": known_hosts}

    daemon = CobaldDaemon(local_copy(tmp_path, executor=to_test_sshd)).start()
    try:
        # condor_q ran on the far side of the SSH connection: the shell there answered
        # (whether the host there has HTCondor's tools or not: PHYSnet's schedd is not here)
        wait_until(
            lambda: re.search(r"demand source CondorQueueDemand failed .*condor_q", daemon.log()),
            90,
            "condor_q to be run over SSH",
            daemon,
        )
        time.sleep(RUN_SECONDS)
        assert daemon.alive, daemon.log()[-4000:]
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log(), daemon.log()[-4000:]
