"""The pilot's htcondor mode without HTCondor daemons (none can run here).

``condor_master`` and ``condor_off`` are stood in for by small scripts that record how
they were called; everything else is real: the pilot generates the startd configuration
with ``python -m tardis_sge_dask.pilot.startd_config``, the token is handed over through
``SEC_TOKEN_DIRECTORY``, and a warning signal to the job's process group (Grid Engine's
``-notify``) turns into ``condor_off -graceful -daemon master``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tardis_sge_dask.pilot import pilot_path

FAKE_MASTER = """#!/bin/bash
# Records its configuration, then runs until condor_off tells it to go.
cp "$CONDOR_CONFIG" "$RECORD/condor_config"
ls "$(dirname "$CONDOR_CONFIG")/../tokens.d" > "$RECORD/tokens"
echo $$ > "$RECORD/master.pid"
trap 'exit 0' TERM
while :; do sleep 0.2; done
"""
# answers like HTCondor: the configuration files it reads, one per line after a tab
FAKE_CONDOR_CONFIG_VAL = """#!/bin/bash
[ "$1" = -config ] && printf '\\t%s\\n' "$CONDOR_CONFIG"
"""
FAKE_CONDOR_OFF = """#!/bin/bash
echo "$@" > "$RECORD/condor_off.args"
echo "$CONDOR_CONFIG" > "$RECORD/condor_off.config"
kill -TERM "$(cat "$RECORD/master.pid")"
"""
# Apptainer cannot run here: this one records how it was called, skips its own options
# and the image, and runs the command on the host, as "inside the image".
FAKE_APPTAINER = """#!/bin/bash
echo "$@" >> "$RECORD/apptainer.args"
[ "$1" = exec ] && shift
while [ $# -gt 0 ]; do
    case $1 in --bind|--pwd) shift 2 ;; --*) shift ;; *) break ;; esac
done
shift
exec "$@"
"""


@pytest.mark.parametrize("container", ["none", "image", "retire"])
def test_htcondor_mode_configures_the_startd_and_drains_it(tmp_path, container):
    """``retire``: no signal; the walltime minus the margin runs out and the pilot drains
    by itself (the master would only notice its retired startd minutes later)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fakes = [
        ("condor_master", FAKE_MASTER),
        ("condor_off", FAKE_CONDOR_OFF),
        ("condor_config_val", FAKE_CONDOR_CONFIG_VAL),
    ]
    if container == "image":
        fakes.append(("apptainer", FAKE_APPTAINER))
    for name, body in fakes:
        (fake_bin / name).write_text(body)
        (fake_bin / name).chmod(0o755)
    record = tmp_path / "record"
    record.mkdir()
    token = tmp_path / "drone.token"
    token.write_text("eyJhbGciOiJIUzI1NiJ9.not-a-real-token.sig\n")
    scratch_base = tmp_path / "scratch"
    scratch_base.mkdir()
    base_config = tmp_path / "image_condor_config"
    base_config.write_text("RELEASE_DIR = /usr\n")
    env = {
        "PATH": f"{fake_bin}:/usr/bin:/bin",
        "RECORD": str(record),
        "TardisDroneCores": "4",
        "TardisDroneMemory": "8000",
        "TardisDroneDisk": "1000",
        "TardisDroneUuid": "htc-drone-1",
        "PILOT_MODE": "htcondor",
        "PILOT_COLLECTOR": "pool.example:9618",
        "PILOT_TOKEN_FILE": str(token),
        "PILOT_PYTHON": sys.executable,
        "PILOT_WALLTIME": "7200",
        "PILOT_SCRATCH_BASE": str(scratch_base),
        "PILOT_IMAGE_CONDOR_CONFIG": str(base_config),
    }
    if container == "retire":
        env.update(PILOT_WALLTIME="62", PILOT_LIFETIME_MARGIN="60")
    if container == "image":
        image = tmp_path / "drone.sif"
        image.write_text("not really an image")
        env.update(
            PILOT_CONTAINER=str(image),
            PILOT_IMAGE_PYTHON=sys.executable,
            PILOT_GPUS="1",
            CUDA_VISIBLE_DEVICES="3",
            PILOT_CHECK_GFAL2="false",  # this "image" is the host, which has no gfal2
        )
    pilot = subprocess.Popen(
        ["bash", str(pilot_path())],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (record / "master.pid").exists():
            assert pilot.poll() is None, pilot.communicate()
            assert time.monotonic() < deadline, "condor_master was never started"
            time.sleep(0.2)
        if container != "retire":
            os.killpg(pilot.pid, signal.SIGUSR2)
        stdout, stderr = pilot.communicate(timeout=60)
    finally:
        if pilot.poll() is None:
            os.killpg(pilot.pid, signal.SIGKILL)
            pilot.wait()

    assert pilot.returncode == 0, stderr
    config = (record / "condor_config").read_text()
    assert config.splitlines()[1] == f"include : {base_config}"
    assert "STARTD_NAME = htc-drone-1" in config
    assert "NUM_CPUS = 4" in config and "MEMORY = 8000" in config
    assert "COLLECTOR_HOST = pool.example:9618" in config
    assert (record / "tokens").read_text().split() == ["drone.token"]
    assert "not-a-real-token" not in config + stdout + stderr
    assert (record / "condor_off.args").read_text().split() == ["-graceful", "-daemon", "master"]
    assert Path((record / "condor_off.config").read_text().strip()).name == "condor_config"
    if container == "retire":
        assert "retire time reached" in stdout and "draining the htcondor payload" in stdout
    else:
        assert "received SIGUSR2: draining the htcondor payload" in stdout
    assert list(scratch_base.iterdir()) == []
    if container == "image":
        calls = (record / "apptainer.args").read_text().splitlines()
        assert calls and all(call.startswith("exec --contain") for call in calls)
        assert all("--nv" in call.split() and str(image) in call.split() for call in calls)
        assert "MACHINE_RESOURCE_GPUs = 3" in config  # the batch job's GPU, by its id
    else:
        assert "MACHINE_RESOURCE_GPUs" not in config
