"""The drone startd's configuration, matched with classad2 against real job ads.

Matchmaking is reproduced with the ``classad2`` bindings of the htcondor wheel:

* the *job ads* are the schedd's own, recorded with ``condor_q -long`` from the real
  HTCondor 23.9 pool of services/htcondor-up.sh (tests/fixtures/htcondor/recorded-23.9):
  dask-jobqueue 0.9.0 worker jobs submitted by ``OverlayCluster``, an htcdaskgateway-style
  worker and a plain job, with the ``Requirements`` condor_submit really wrote.
  ``RequestCpus = MY.DaskWorkerCores`` stays an expression there: offline it is Undefined,
  and it only takes a value inside a match (both facts are asserted below);
* the *machine ad* is the partitionable slot a startd would advertise with the generated
  configuration: ``STARTD_ATTRS`` attributes, ``Cpus``/``Memory`` from ``NUM_CPUS``/
  ``MEMORY``, ``Disk`` = the promised disk, ``START``, and the p-slot ``Requirements``
  (``START`` and the job fitting into the slot);
* a match is ``classad2.ClassAd.symmetricMatch``: each ad's Requirements evaluated with
  the other ad as TARGET, as the negotiator does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import classad2
import pytest

from tardis_sge_dask.demand.htcondor import DEFAULT_CONSTRAINT
from tardis_sge_dask.pilot.startd_config import (
    DASK_WORKER_START,
    StartdConfigError,
    StartdSettings,
    main,
    render_startd_config,
    settings_from_environment,
)

RECORDED = Path(__file__).parent.parent / "fixtures" / "htcondor" / "recorded-23.9"
MANIFEST = json.loads((RECORDED / "manifest.json").read_text())
# every job of the recording, by id, as the schedd holds it
JOB_ADS = {
    f"{ad['ClusterId']}.{ad['ProcId']}": ad
    for ad in classad2.parseAds((RECORDED / "condor_q-long-all.stdout").read_text(),
                                classad2.ParserType.Old)
}  # fmt: skip


def job_ad(role: str) -> classad2.ClassAd:
    """A fresh copy of the recorded ad of the job with this role (see the manifest)."""
    return classad2.parseOne(JOB_ADS[MANIFEST["jobs"][role][0]].printOld(), classad2.ParserType.Old)


# dask-jobqueue workers: cores=2/memory="4GB" fits the tests' 4-core/8000 MB drone,
# cores=8/memory="32GB" does not
SMALL_DASK_JOB = "idle"
BIG_DASK_JOB = "bigger"


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
    plain = job_ad("plain")
    restrictive = machine_ad(render_startd_config(settings()))
    permissive = machine_ad(render_startd_config(settings(start_expression="True")))
    assert not restrictive.symmetricMatch(plain)
    assert permissive.symmetricMatch(plain)


def test_drone_runs_an_htcdaskgateway_worker():
    """htcdaskgateway marks its workers isDaskJob and asks for (isDaskNode == True)."""
    job = job_ad("gateway")
    assert "DaskWorkerCores" not in job and "IsDaskWorker" not in job
    assert machine_ad(render_startd_config(settings())).symmetricMatch(job)


def test_a_drone_starts_exactly_the_jobs_the_controller_counts():
    """No waiting job brings drones up that then refuse it, and no job the controller
    ignores lands on a drone: the default START and the demand source's default
    constraint agree on every job of the recording."""
    machine = machine_ad(render_startd_config(settings()))
    start = classad2.ExprTree("START")
    counted = classad2.ExprTree(DEFAULT_CONSTRAINT)
    verdicts = {
        job_id: (counted.eval(job), start.eval(machine, job)) for job_id, job in JOB_ADS.items()
    }
    assert all(demand is accepted for demand, accepted in verdicts.values()), verdicts
    assert sorted(accepted for _, accepted in verdicts.values()) == [False] + [True] * (
        len(JOB_ADS) - 1
    )  # the plain job is the one refused


def test_custom_start_expression_can_narrow_to_one_user_batch():
    job = job_ad(SMALL_DASK_JOB)
    batch = job.eval("JobBatchName")  # dask-jobqueue's batch_name: the worker's name
    mine = f'{DASK_WORKER_START} && (TARGET.JobBatchName == "{batch}")'
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
    grid = parse_config(
        render_startd_config(
            settings(
                job_path="/opt/dask/bin:/usr/bin",
                x509_user_proxy="/home/pilot/x509up",
                x509_cert_dir="/etc/grid-security/certificates",
            )
        )
    )
    assert grid["STARTER_JOB_ENVIRONMENT"] == (
        '"PATH=/opt/dask/bin:/usr/bin X509_USER_PROXY=/home/pilot/x509up'
        ' X509_CERT_DIR=/etc/grid-security/certificates"'
    )
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
        {"x509_user_proxy": "/tmp/x509up X509_CERT_DIR=/evil"},
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
    assert s.x509_user_proxy is None and s.x509_cert_dir is None
    # the pilot exports X509_USER_PROXY only once its health check passed
    checked = settings_from_environment(
        {**ENVIRONMENT, "X509_USER_PROXY": "/home/pilot/x509up", "X509_CERT_DIR": "/certs"},
        tmp_path,
    )
    assert (checked.x509_user_proxy, checked.x509_cert_dir) == ("/home/pilot/x509up", "/certs")
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
    assert not machine_ad(render_startd_config(settings())).symmetricMatch(job_ad("gpu"))
    gpu_drone = machine_ad(render_startd_config(settings(gpus=1)))
    assert gpu_drone.symmetricMatch(job_ad("gpu"))
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


def test_startd_config_runs_with_the_package_alone():
    # the drone image installs this package without its dependencies (test-image/build.sh)
    heavy = ("pydantic", "tardis", "cobald", "yaml", "distributed")
    probe = (
        "import sys, tardis_sge_dask.pilot.startd_config;"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == "[]"


@pytest.mark.parametrize("walltime, refused", [(900, True), (901, False)])
def test_check_and_the_drone_refuse_the_same_walltimes(walltime, refused):
    from tardis_sge_dask.schema.sites import SGESection

    section = SGESection.parse_obj(
        {
            "MachineTypes": ["m"],
            "MachineMetaData": {"m": {"Cores": 1, "Memory": 1, "Disk": 1}},
            "MachineTypeConfiguration": {
                "m": {
                    "StartupCommand": "/p",
                    "Walltime": walltime,
                    "JobEnvironment": {
                        "PILOT_DASK_SCHEDULER": "tcp://h:8786",
                        "PILOT_LIFETIME_MARGIN": 900,
                    },
                }
            },
        }
    )
    by_check = [p for p in section.problems() if p.key.endswith("Walltime")]
    try:
        settings(walltime=walltime, lifetime_margin=900)
        by_drone = False
    except StartdConfigError:
        by_drone = True
    assert (bool(by_check), by_drone) == (refused, refused)
