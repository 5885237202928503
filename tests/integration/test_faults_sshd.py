"""sshd restarted under a running ``python -m cobald.daemon`` whose site is reached over SSH.

The site's executor is TARDIS's ``!TardisSSHExecutor`` to the test sshd (127.0.0.1:2222,
user ``tardis``, host key pinned), submitting to the real Grid Engine as a remote site
does. While drones run, the sshd listener and every session process under it (the
daemon's connection) are killed with SIGKILL, the daemon meets a dead submit host for a
few heartbeats, then ``services/sshd-up.sh`` starts sshd again. The figures are those of
test_faults_daemon.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers.daemon import CobaldDaemon, unified_config, unique_site, wait_until
from tests.helpers.site_sections import sge_site_section
from tests.integration.test_faults_daemon import (
    SERVICES,
    SGE,
    Site,
    report,
    settled,
    settled_figures,
)

pytestmark = pytest.mark.integration

PIDFILE = Path("/run/sshd-test.pid")


def pinned_known_hosts(directory: Path) -> Path:
    key = Path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    path = directory / "known_hosts"
    path.write_text(f"[127.0.0.1]:2222 {key[0]} {key[1]}\n")
    return path


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the per-connection sshd processes of a listener)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # the command name may hold spaces and parentheses: the ppid follows the last ')'
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_sshd() -> int:
    """SIGKILL the test sshd's listener and its sessions; how many session processes."""
    listener = int(PIDFILE.read_text())
    sessions = descendants(listener)
    for pid in [listener, *sessions]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(
        lambda: (
            subprocess.run(
                ["bash", "-c", "</dev/tcp/127.0.0.1/2222"], capture_output=True
            ).returncode
            != 0
        ),
        30,
        "sshd to stop listening",
    )
    return len(sessions)


@pytest.fixture
def ssh_site(sge, sshd, tmp_path):
    name = unique_site("fssh")
    # the jobs run as the SSH user: their logs go where that user may write (pytest's
    # directories are root's alone; a job that cannot open its output is put in Eqw)
    logs = Path(tempfile.mkdtemp(prefix="tsd-fssh-", dir="/tmp"))
    logs.chmod(0o1777)
    config, demand = unified_config(
        tmp_path, site=name, adapter="SGE", site_section=sge_site_section(logs), quota=10
    )
    executor = {**sshd, "known_hosts": str(pinned_known_hosts(tmp_path))}
    text = config.read_text().replace(
        "!TardisShellExecutor {}", f"!TardisSSHExecutor {json.dumps(executor)}"
    )
    assert "!TardisSSHExecutor" in text
    config.write_text(text)
    daemon = CobaldDaemon(config)
    yield Site(SGE, name, daemon, demand, tmp_path / "drones.db", {})
    daemon.stop()
    SGE.remove(name.lower())
    shutil.rmtree(logs, ignore_errors=True)


def test_sshd_restarted_mid_run_the_executor_reconnects(ssh_site: Site):
    site = ssh_site
    started = time.monotonic()
    site.daemon.start()
    site.demand.write_text("3")
    wait_until(
        lambda: settled(site, 3)() and all(row.job_id for row in site.registry_rows()),
        120,
        "3 drones registered with their job ids, over SSH",
        site.daemon,
    )
    before = site.figures()
    registered_before = {row.drone_uuid: row.job_id for row in site.registry_rows()}
    log_at_kill = len(site.daemon.log())
    try:
        sessions = kill_sshd()
        # several heartbeats (2 s) and pool cycles meet a submit host that refuses
        time.sleep(15)
        assert site.daemon.alive, site.daemon.log()[-3000:]
        assert settled(site, 3)(), "the drones' jobs must outlive their submit host's sshd"
    finally:
        subprocess.run(["bash", str(SERVICES / "sshd-up.sh")], check=True, capture_output=True)
    failures_while_down = [
        line
        for line in site.daemon.log()[log_at_kill:].splitlines()
        if " WARNING " in line or " ERROR " in line
    ]
    # a new drone: its qsub goes over a new SSH connection
    site.demand.write_text("4")
    after = settled_figures(site, 4, 180)
    registered_after = {row.drone_uuid: row.job_id for row in site.registry_rows()}
    print(
        f"\nsshd session processes killed: {sessions}; warnings while sshd was down:"
        f" {len(failures_while_down)}; drones tracked across the restart:"
        f" {len(registered_before.items() & registered_after.items())}/{len(registered_before)};"
        f" tracebacks in the log: {site.daemon.log().count('Traceback')}"
    )
    report("sshd SIGKILLed and restarted (SSH executor)", site, before, after, started)
    assert registered_before.items() <= registered_after.items()
    assert after == {
        "drones": 4, "duplicates": 0, "orphans": 0, "confused": 0, "daemon alive": True
    }  # fmt: skip
