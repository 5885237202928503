"""``configs/physnet.yaml`` is sound and the real daemon builds its pipeline.

The production file names PHYSnet hosts, keys and paths that do not exist here. The
offline check must find nothing else wrong with it; then the file is copied with only
those host-specific values replaced by local stand-ins (executors, paths, the port) and
``python -m cobald.daemon`` runs it: controller, HTCondor demand source, pool factory,
four SGE machine types, HTCondor batch system, SqliteRegistry, Prometheus plugin, logging.
tests/integration/test_physnet_config_ssh.py does the same with the SSH executors kept.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tardis_sge_dask.check import check
from tardis_sge_dask.configfile import Tagged, dump, load
from tardis_sge_dask.pilot import pilot_path
from tests.helpers.daemon import CobaldDaemon, wait_until

PHYSNET = Path(__file__).parent.parent.parent / "configs" / "physnet.yaml"
RUN_SECONDS = 8

# What only exists on the PHYSnet machines; everything else must pass the offline check.
HOST_SPECIFIC = re.compile(r"(db_file|client_keys\[\d+\]|known_hosts|StartupCommand)$")


def executors(node: Any, path: str = "") -> list[tuple[str, Tagged]]:
    """Every executor tag in the document, with where it is."""
    found = []
    if isinstance(node, Tagged):
        if node.tag.endswith("Executor"):
            found.append((path, node))
        node = node.value
    if isinstance(node, dict):
        for key, value in node.items():
            found += executors(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += executors(value, f"{path}[{index}]")
    return found


def local_copy(directory: Path, executor: Any = None) -> Path:
    """physnet.yaml with the host-specific values replaced; ``executor`` maps an SSH
    executor's settings to its stand-in (default: a local shell)."""
    document = load(PHYSNET)
    tardis = document["tardis"]
    for _, tagged in executors(document):
        assert tagged.tag == "TardisSSHExecutor", tagged
        if executor is None:
            tagged.tag, tagged.value = "TardisShellExecutor", {}
        else:
            tagged.value = executor(tagged.value)
    tardis["Plugins"]["SqliteRegistry"]["db_file"] = str(directory / "drones.db")
    tardis["Plugins"]["PrometheusMonitoring"]["addr"] = "127.0.0.1"
    tardis["Plugins"]["PrometheusMonitoring"]["port"] = 0
    for machine in tardis["PHYSnet"]["MachineTypeConfiguration"].values():
        machine["StartupCommand"] = str(pilot_path())
        machine["LogDirectory"] = str(directory)
    document["logging"]["handlers"]["file"]["filename"] = str(directory / "physnet.log")
    path = directory / "physnet-local.yaml"
    path.write_text(dump(document))
    return path


def test_the_production_file_has_nothing_wrong_but_physnet_paths():
    problems = check(PHYSNET)
    assert problems, "the PHYSnet paths should not exist on a test machine"
    unexpected = [p for p in problems if not HOST_SPECIFIC.search(str(p.key_path))]
    assert unexpected == []


def test_every_remote_command_goes_over_ssh_with_pinned_host_keys():
    found = executors(load(PHYSNET))
    where = {path for path, _ in found}
    assert where == {
        "pipeline[0].source.executor",  # condor_q on the overlay schedd
        "tardis.BatchSystem.executor",  # condor_status / condor_drain
        "tardis.PHYSnet.executor",  # qsub / qstat / qacct / qdel
    }
    for _, tagged in found:
        assert tagged.tag == "TardisSSHExecutor"
        assert {"host", "username", "client_keys", "known_hosts"} <= set(tagged.value)


def test_the_copy_with_local_stand_ins_passes_the_offline_check(tmp_path):
    assert check(local_copy(tmp_path)) == []


@pytest.mark.timeout(120)
def test_the_daemon_builds_the_physnet_pipeline_and_keeps_running(tmp_path):
    daemon = CobaldDaemon(local_copy(tmp_path)).start()
    try:
        # the controller asked the (stand-in) overlay schedd at least once
        wait_until(
            lambda: "CondorQueueDemand" in daemon.log(),
            60,
            "the controller to read its demand source",
            daemon,
        )
        time.sleep(RUN_SECONDS)
        assert daemon.alive, daemon.log()[-4000:]
    finally:
        daemon.stop()
    log = daemon.log()
    assert "Traceback" not in log, log[-4000:]
    # the file handler of the logging section works too
    assert "CondorQueueDemand" in (tmp_path / "physnet.log").read_text()
