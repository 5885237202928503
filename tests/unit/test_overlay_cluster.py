"""OverlayCluster renders worker jobs that land on drones and need no shared filesystem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from distributed.security import Security

from tardis_sge_dask.dask.cluster import OVERLAY_DEFAULTS, OverlayCluster, submit_file_arguments

CONFIG = Path(__file__).parents[2] / "configs" / "jobqueue.yaml"


@pytest.fixture
def cluster_script(tmp_path):
    clusters = []

    def render(**kwargs):
        kwargs.setdefault("scheduler_options", {"dashboard_address": ":0", "port": 0})
        cluster = OverlayCluster(cores=2, memory="8GB", disk="4GB", **kwargs)
        clusters.append(cluster)
        return cluster.job_script()

    yield render
    for cluster in clusters:
        cluster.close()


def header(script: str) -> dict[str, str]:
    lines = [line.split(" = ", 1) for line in script.splitlines() if " = " in line]
    return {key: value for key, value in lines}


def test_worker_jobs_are_marked_and_bound_to_drones(cluster_script):
    head = header(cluster_script())
    assert head["MY.IsDaskWorker"] == "true"
    assert head["Requirements"] == "(TARGET.TardisDroneUuid =!= undefined)"
    assert head["RequestCpus"] == "MY.DaskWorkerCores"  # what the demand source reads


def test_lifetime_ports_and_scratch_without_shared_filesystem(cluster_script):
    argv = submit_file_arguments(cluster_script())
    command = " ".join(argv)
    assert argv[1].startswith("python3 -m distributed.cli.dask_worker")
    assert "--lifetime 3h --lifetime-stagger 5m" in command
    assert "--worker-port 40000:40100" in command
    assert "--local-directory $_CONDOR_SCRATCH_DIR" in command


def test_contact_address_is_what_workers_connect_to(cluster_script):
    argv = submit_file_arguments(cluster_script(contact_address="tcp://203.0.113.7:8786"))
    assert "dask_worker tcp://203.0.113.7:8786 " in argv[1]


def test_tls_files_travel_with_the_job(cluster_script, tmp_path):
    security = Security.temporary()
    script = cluster_script(security=security, shared_temp_directory=str(tmp_path))
    head = header(script)
    files = head["transfer_input_files"].split(",")
    assert len(files) == 3 and all(Path(f).exists() for f in files)
    command = submit_file_arguments(script)[1]
    for path in files:
        assert path not in command  # the drone reads the transferred copy in its scratch dir
        assert Path(path).name in command


def test_user_requirements_are_added_to_the_drone_requirement(cluster_script):
    head = header(cluster_script(job_extra_directives={"Requirements": 'TARGET.Site == "epyx"'}))
    assert head["Requirements"] == (
        '(TARGET.TardisDroneUuid =!= undefined) && (TARGET.Site == "epyx")'
    )


def test_configs_jobqueue_yaml_documents_every_overlay_default():
    documented = yaml.safe_load(CONFIG.read_text())["jobqueue"]["overlay"]
    assert set(OVERLAY_DEFAULTS) <= set(documented)


def test_the_job_names_its_worker_as_the_worker_calls_itself():
    """dask-jobqueue labels the job "htcondor--<id>--" but starts the worker under the
    cluster's name; the drone publishes DaskWorkerName and `status` maps workers by it."""
    from tardis_sge_dask.dask.cluster import OverlayJob

    job = OverlayJob(
        scheduler="tcp://127.0.0.1:8786", name="OverlayCluster-3", cores=1, memory="1GB", disk="1GB"
    )
    script = job.job_script()
    assert 'MY.DaskWorkerName = "OverlayCluster-3"' in script
    assert "--name OverlayCluster-3" in script
