"""The drone startd's configuration, matched with classad2 against real dask-jobqueue jobs.

No HTCondor daemon can run here (DESIGN §4), so matchmaking is reproduced with the
``classad2`` bindings of the htcondor wheel:

* the *job ad* is built from the verbatim submit description that dask-jobqueue 0.9.0's
  ``HTCondorCluster.job_script()`` produced (tests/fixtures/htcondor/*.submit), translated
  as ``condor_submit`` does it: ``MY.X``/``+X`` lines become attributes, ``$(ClusterId)``
  and ``$(ProcId)`` are substituted, ``request_*`` become ``Request*``, and the default
  ``Requirements`` that condor_submit adds when a submit file has none is appended.
  ``RequestCpus = MY.DaskWorkerCores`` stays an expression: offline it is Undefined,
  and it only takes a value inside a match (both facts are asserted below);
* the *machine ad* is the partitionable slot a startd would advertise with the generated
  configuration: ``STARTD_ATTRS`` attributes, ``Cpus``/``Memory`` from ``NUM_CPUS``/
  ``MEMORY``, ``Disk`` = the promised disk, ``START``, and the p-slot ``Requirements``
  (``START`` and the job fitting into the slot);
* a match is ``classad2.ClassAd.symmetricMatch``: each ad's Requirements evaluated with
  the other ad as TARGET, as the negotiator does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import classad2
import pytest

from tardis_sge_dask.pilot.startd_config import (
    DASK_WORKER_START,
    StartdConfigError,
    StartdSettings,
    main,
    render_startd_config,
    settings_from_environment,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "htcondor"
SMALL_DASK_JOB = FIXTURES / "dask-jobqueue-0.9.0-2cores-4GB.submit"
BIG_DASK_JOB = FIXTURES / "dask-jobqueue-0.9.0-8cores-32GB.submit"
PLAIN_JOB = FIXTURES / "non-dask-job.submit"

# What condor_submit appends when the submit description sets no requirements.
CONDOR_SUBMIT_DEFAULT_REQUIREMENTS = (
    '(TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk)'
    " && (TARGET.Memory >= RequestMemory) && (TARGET.Cpus >= RequestCpus)"
    " && (TARGET.HasFileTransfer)"
)
_SUBMIT_ATTRIBUTE = {
    "request_cpus": "RequestCpus",
    "requestcpus": "RequestCpus",
    "request_memory": "RequestMemory",
    "requestmemory": "RequestMemory",
    "request_disk": "RequestDisk",
    "requestdisk": "RequestDisk",
}


def job_ad(submit_file: Path, cluster: int = 42, proc: int = 0) -> classad2.ClassAd:
    ad = classad2.ClassAd()
    ad["ClusterId"] = cluster
    ad["ProcId"] = proc
    job_id = f"{cluster}.{proc}"
    for raw in submit_file.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.lower().startswith("queue"):
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        value = value.replace("$(ClusterId)", str(cluster)).replace("$(ProcId)", str(proc))
        value = value.replace("$F(MY.JobId)", job_id)
        lowered = key.lower()
        if lowered.startswith("my.") or key.startswith("+"):
            ad[key.split(".", 1)[1] if "." in key else key[1:]] = classad2.ExprTree(value)
        elif lowered in _SUBMIT_ATTRIBUTE:
            ad[_SUBMIT_ATTRIBUTE[lowered]] = classad2.ExprTree(value)
        elif lowered == "batch_name":
            ad["JobBatchName"] = value
        elif lowered == "executable":
            ad["Cmd"] = value
        elif lowered == "arguments":
            ad["Arguments"] = value.strip('"')
    ad["Requirements"] = classad2.ExprTree(CONDOR_SUBMIT_DEFAULT_REQUIREMENTS)
    return ad


def parse_config(text: str) -> dict[str, str]:
    config: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        # Expand earlier definitions; an undefined $(X) is empty, as in condor_config_val.
        config[key] = re.sub(r"\$\((\w+)\)", lambda m: config.get(m.group(1), ""), value)
    return config


def machine_ad(config_text: str) -> classad2.ClassAd:
    """The partitionable slot ad a startd advertises with this configuration."""
    config = parse_config(config_text)
    ad = classad2.ClassAd()
    for attribute in config["STARTD_ATTRS"].split():
        ad[attribute] = classad2.ExprTree(config[attribute])
    ad["Name"] = f"slot1@{config['STARTD_NAME']}"
    ad["Machine"] = config["STARTD_NAME"]
    ad["Arch"] = "X86_64"
    ad["OpSys"] = "LINUX"
    ad["HasFileTransfer"] = True
    ad["PartitionableSlot"] = config["SLOT_TYPE_1_PARTITIONABLE"] == "True"
    ad["SlotType"] = "Partitionable"
    ad["Cpus"] = int(config["NUM_CPUS"])
    ad["Memory"] = int(config["MEMORY"])
    # disk=100% of EXECUTE, which the pilot checked holds at least the promised disk.
    ad["Disk"] = classad2.ExprTree("TardisDroneDisk")
    ad["START"] = classad2.ExprTree(config["START"])
    # a machine resource of N units, or of the listed ids, becomes a GPUs attribute
    resource = config.get("MACHINE_RESOURCE_GPUs", "0")
    ad["GPUs"] = int(resource) if resource.isdigit() else len(resource.split(","))
    ad["Requirements"] = classad2.ExprTree(
        "START && (MY.Cpus >= TARGET.RequestCpus) && (MY.Memory >= TARGET.RequestMemory)"
        " && (MY.Disk >= TARGET.RequestDisk)"
    )
    return ad


def gpu_job() -> classad2.ClassAd:
    """The small Dask worker job with ``request_gpus = 1``, as condor_submit writes it."""
    job = job_ad(SMALL_DASK_JOB)
    job["RequestGpus"] = 1
    job["Requirements"] = classad2.ExprTree(
        f"({CONDOR_SUBMIT_DEFAULT_REQUIREMENTS}) && (TARGET.GPUs >= RequestGpus)"
    )
    return job


def settings(**overrides) -> StartdSettings:
    values = dict(
        uuid="physnet-sge-4c-0a1b2c3d",
        cores=4,
        memory_mb=8000,
        disk_kib=20_000_000,
        collector="collector.physnet.example:9618",
        local_dir="/scratch/drone/condor",
        token_dir="/scratch/drone/tokens.d",
    )
    values.update(overrides)
    return StartdSettings(**values)


def test_request_cpus_is_undefined_outside_a_match_and_defined_inside():
    # A fresh interpreter: once anything parses old-syntax ads (as the condor_q demand source
    # does), classad2 switches to old semantics process-wide and MY. resolves to the ad itself.
    fresh = subprocess.run(
        [sys.executable, "-c",
         "import classad2; ad = classad2.ClassAd(); ad['DaskWorkerCores'] = 2;"
         " ad['RequestCpus'] = classad2.ExprTree('MY.DaskWorkerCores');"
         " print(ad.eval('RequestCpus') is classad2.Value.Undefined)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert fresh.stdout.strip() == "True"
    job = job_ad(SMALL_DASK_JOB)
    machine = machine_ad(render_startd_config(settings()))
    assert classad2.ExprTree("TARGET.RequestCpus").eval(machine, job) == 2
    assert classad2.ExprTree("TARGET.RequestMemory").eval(machine, job) == 3814


def test_drone_matches_a_real_dask_jobqueue_worker_job():
    job = job_ad(SMALL_DASK_JOB)
    machine = machine_ad(render_startd_config(settings()))
    assert machine.symmetricMatch(job)
    assert machine.eval("TardisDroneUuid") == "physnet-sge-4c-0a1b2c3d"


def test_drone_too_small_for_a_bigger_dask_worker_job():
    job = job_ad(BIG_DASK_JOB)
    assert not machine_ad(render_startd_config(settings())).symmetricMatch(job)
    roomy = settings(cores=8, memory_mb=32_000, disk_kib=20_000_000)
    assert machine_ad(render_startd_config(roomy)).symmetricMatch(job)


def test_default_start_rejects_a_non_dask_job_that_would_fit():
    plain = job_ad(PLAIN_JOB)
    restrictive = machine_ad(render_startd_config(settings()))
    permissive = machine_ad(render_startd_config(settings(start_expression="True")))
    assert not restrictive.symmetricMatch(plain)
    assert permissive.symmetricMatch(plain)


def test_custom_start_expression_can_narrow_to_one_user_batch():
    job = job_ad(SMALL_DASK_JOB)
    mine = f'{DASK_WORKER_START} && (TARGET.JobBatchName == "dummy-name")'
    other = f'{DASK_WORKER_START} && (TARGET.JobBatchName == "someone-else")'
    assert machine_ad(render_startd_config(settings(start_expression=mine))).symmetricMatch(job)
    assert not machine_ad(render_startd_config(settings(start_expression=other))).symmetricMatch(
        job
    )


def test_drone_past_its_retire_time_takes_no_job():
    job = job_ad(SMALL_DASK_JOB)
    fresh = settings(walltime=86_400, lifetime_margin=600, started_at=2_000_000_000)
    expired = settings(walltime=3_600, lifetime_margin=600, started_at=1_000_000_000)
    assert machine_ad(render_startd_config(fresh)).symmetricMatch(job)
    assert not machine_ad(render_startd_config(expired)).symmetricMatch(job)
    config = parse_config(render_startd_config(expired))
    assert config["TardisDroneRetireTime"] == str(1_000_000_000 + 3_600 - 600)
    assert config["STARTD.DAEMON_SHUTDOWN"] == "time() > TardisDroneRetireTime"
    assert config["MAXJOBRETIREMENTTIME"] == "540"


def test_configuration_what_tardis_and_the_pool_rely_on():
    config = parse_config(render_startd_config(settings(ccb="ccb.physnet.example:9618")))
    assert config["STARTD_NAME"] == "physnet-sge-4c-0a1b2c3d"
    assert "TardisDroneUuid" in config["STARTD_ATTRS"].split()
    assert config["SLOT_TYPE_1_PARTITIONABLE"] == "True"
    assert config["NUM_SLOTS_TYPE_1"] == "1"
    assert config["COLLECTOR_HOST"] == "collector.physnet.example:9618"
    assert config["CCB_ADDRESS"] == "ccb.physnet.example:9618"
    # an unprivileged master in a container cannot start condor_shared_port
    assert config["USE_SHARED_PORT"] == "False"
    # FS proofs go where every container of the drone looks (each has its own /tmp)
    assert config["FS_LOCAL_DIR"] == "/scratch/drone/condor/fs"
    assert config["SEC_TOKEN_DIRECTORY"] == "/scratch/drone/tokens.d"
    assert "IDTOKENS" in config["SEC_DEFAULT_AUTHENTICATION_METHODS"]
    assert config["STARTD_NOCLAIM_SHUTDOWN"] == "600"
    assert config["MASTER.DAEMON_SHUTDOWN"] == "STARTD_StartTime =?= 0"
    # CCB defaults to the collector.
    default_ccb = parse_config(render_startd_config(settings()))
    assert default_ccb["CCB_ADDRESS"] == "collector.physnet.example:9618"


def test_the_image_configuration_is_read_first_and_jobs_get_the_drone_path():
    text = render_startd_config(
        settings(
            job_path="/opt/dask/bin:/usr/bin:/bin",
            base_configs=("/etc/condor/condor_config", "/etc/condor/config.d/00-site"),
        )
    )
    # the image's files first, in HTCondor's order; its config directory is not read again
    # after the drone's settings
    assert text.splitlines()[1:6] == [
        "include : /etc/condor/condor_config",
        "include : /etc/condor/config.d/00-site",
        "LOCAL_CONFIG_DIR =",
        "LOCAL_CONFIG_FILE =",
        "",
    ]
    config = parse_config(text)
    assert config["STARTER_JOB_ENVIRONMENT"] == '"PATH=/opt/dask/bin:/usr/bin:/bin"'
    assert "UPDATE_INTERVAL = 20" in render_startd_config(settings(update_interval=20))
    without = render_startd_config(settings())
    assert "UPDATE_INTERVAL" not in without
    assert "include" not in without and "STARTER_JOB_ENVIRONMENT" not in without


def test_rendering_is_pure():
    assert render_startd_config(settings()) == render_startd_config(settings())


@pytest.mark.parametrize(
    "overrides",
    [
        {"uuid": "bad name"},
        {"cores": 0},
        {"collector": "host; rm -rf /"},
        {"start_expression": "True\nSTART = False"},
        {"walltime": 100, "lifetime_margin": 300},
        {"base_configs": ("/etc/condor/condor_config\nSTART = True",)},
        {"job_path": "/opt/dask/bin:/tmp/$(evil)"},
    ],
)
def test_unsound_settings_are_refused(overrides):
    with pytest.raises(StartdConfigError):
        settings(**overrides)


ENVIRONMENT = {
    "TardisDroneUuid": "drone-7",
    "TardisDroneCores": "2",
    "TardisDroneMemory": "4000",
    "TardisDroneDisk": "1000000",
    "PILOT_COLLECTOR": "pool.example:9618",
    "PILOT_WALLTIME": "7200",
    "PILOT_LIFETIME_MARGIN": "600",
}


def test_settings_from_the_pilot_environment(tmp_path):
    s = settings_from_environment(ENVIRONMENT, tmp_path, now=1_700_000_000)
    assert (s.uuid, s.cores, s.memory_mb, s.disk_kib) == ("drone-7", 2, 4000, 1_000_000)
    assert s.token_dir == str(tmp_path / "tokens.d")
    assert s.retire_time == 1_700_000_000 + 7200 - 600
    assert s.start_expression == DASK_WORKER_START
    with pytest.raises(StartdConfigError, match="TardisDroneCores"):
        settings_from_environment(
            {k: v for k, v in ENVIRONMENT.items() if k != "TardisDroneCores"}, tmp_path
        )


def test_command_line_writes_the_configuration(tmp_path, monkeypatch, capsys):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    # the image's condor_config_val names the files it reads (here: only the base file)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "condor_config_val").write_text(
        '#!/bin/sh\n[ "$1" = -config ] && printf "\\t%s\\n" "$CONDOR_CONFIG"\n'
    )
    (fake_bin / "condor_config_val").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}:/usr/bin:/bin")
    output = tmp_path / "condor" / "condor_config"
    base = tmp_path / "image_condor_config"
    base.write_text("RELEASE_DIR = /usr\n")
    argv = ["--scratch", str(tmp_path), "--output", str(output), "--base-config", str(base)]
    assert main(argv) == 0
    assert "STARTD_NAME = drone-7" in output.read_text()
    assert f"include : {base}" in output.read_text()
    assert (tmp_path / "condor" / "execute").is_dir()
    # an image without HTCondor's own configuration is named, not half-configured
    assert main(argv[:-1] + [str(tmp_path / "missing")]) == 2
    assert "has no HTCondor configuration" in capsys.readouterr().err
    monkeypatch.delenv("PILOT_COLLECTOR")
    assert main(argv) == 2
    assert "PILOT_COLLECTOR" in capsys.readouterr().err


def test_a_gpu_drone_serves_gpu_workers_and_a_plain_drone_does_not():
    assert not machine_ad(render_startd_config(settings())).symmetricMatch(gpu_job())
    gpu_drone = machine_ad(render_startd_config(settings(gpus=1)))
    assert gpu_drone.symmetricMatch(gpu_job())
    assert gpu_drone.eval("TardisDroneGPUs") == 1
    assert gpu_drone.symmetricMatch(job_ad(SMALL_DASK_JOB))  # CPU-only workers fit too


def test_a_drone_advertises_only_the_gpus_its_batch_job_was_given(tmp_path):
    environ = {
        "TardisDroneUuid": "physnet-graphix-01",
        "TardisDroneCores": "8",
        "TardisDroneMemory": "64000",
        "TardisDroneDisk": "100000000",
        "PILOT_COLLECTOR": "collector.physnet.example:9618",
        "PILOT_GPUS": "1",
        "CUDA_VISIBLE_DEVICES": "2,3",  # the node has more; the batch system handed out two
    }
    config = parse_config(render_startd_config(settings_from_environment(environ, tmp_path)))
    assert config["MACHINE_RESOURCE_GPUs"] == "2"  # the device id, one GPU as promised
    assert "gpus=100%" in config["SLOT_TYPE_1"]
    assert config["ENVIRONMENT_FOR_AssignedGPUs"] == "CUDA_VISIBLE_DEVICES"
    without_ids = {**environ, "CUDA_VISIBLE_DEVICES": ""}
    config = parse_config(render_startd_config(settings_from_environment(without_ids, tmp_path)))
    assert config["MACHINE_RESOURCE_GPUs"] == "1"
    plain = {key: value for key, value in environ.items() if "GPU" not in key and "CUDA" not in key}
    config = parse_config(render_startd_config(settings_from_environment(plain, tmp_path)))
    assert "MACHINE_RESOURCE_GPUs" not in config and "gpus" not in config["SLOT_TYPE_1"]
