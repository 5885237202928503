"""Every drone says where it is: its site and machine type, in the overlay and in Dask.

HTCondor mode: the startd advertises ``TardisDroneSite`` and ``TardisDroneMachineType``
from the ``PILOT_SITE``/``PILOT_MACHINE_TYPE`` lines the site adapter writes into the job
script. Direct mode: the worker offers the resources ``site:<site>`` and
``machine-type:<type>`` (as many units as it has threads).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tardis_sge_dask.pilot.startd_config import (
    StartdConfigError,
    render_startd_config,
    settings_from_environment,
)
from tests.unit.test_startd_config import machine_ad

PILOT = Path(__file__).resolve().parents[2] / "tardis_sge_dask" / "pilot" / "drone-pilot.sh"

ENVIRONMENT = {
    "TardisDroneUuid": "physnet-4f3e2d1c0b",
    "TardisDroneCores": "4",
    "TardisDroneMemory": "8000",
    "TardisDroneDisk": "20000000",
    "PILOT_COLLECTOR": "collector.physnet.example:9618",
    "PILOT_SITE": "PHYSnet",
    "PILOT_MACHINE_TYPE": "sge-4core",
}


def test_a_drone_advertises_its_site_and_machine_type(tmp_path):
    ad = machine_ad(render_startd_config(settings_from_environment(ENVIRONMENT, tmp_path)))
    assert ad.eval("TardisDroneSite") == "PHYSnet"
    assert ad.eval("TardisDroneMachineType") == "sge-4core"


def test_a_drone_started_by_hand_advertises_no_site(tmp_path):
    bare = {k: v for k, v in ENVIRONMENT.items() if k not in ("PILOT_SITE", "PILOT_MACHINE_TYPE")}
    ad = machine_ad(render_startd_config(settings_from_environment(bare, tmp_path)))
    assert "TardisDroneSite" not in ad and "TardisDroneMachineType" not in ad


@pytest.mark.parametrize("site", ['PHYS"net', "PHYS\\net", "PHYS\nnet"])
def test_a_site_name_that_is_no_classad_string_is_refused(tmp_path, site):
    with pytest.raises(StartdConfigError, match="site"):
        settings_from_environment({**ENVIRONMENT, "PILOT_SITE": site}, tmp_path)


def worker_command(tmp_path: Path, **environment: str) -> list[str]:
    """The ``dask worker`` command line the pilot starts, caught by a stand-in python."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    caught = tmp_path / "argv"
    python = bin_dir / "python3"
    python.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {caught}\n')
    python.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PILOT_MODE": "dask",
        "PILOT_DASK_SCHEDULER": "tcp://127.0.0.1:1",
        "PILOT_SCRATCH_BASE": str(tmp_path),
        "PILOT_CHECK_DISK": "false",
        **{k: v for k, v in ENVIRONMENT.items() if k.startswith("Tardis")},
        "PILOT_SITE": "PHYSnet",
        "PILOT_MACHINE_TYPE": "sge-4core",
        **environment,
    }
    subprocess.run(["bash", str(PILOT)], env=env, capture_output=True, timeout=60, check=True)
    return caught.read_text().splitlines()


def resources(argv: list[str]) -> dict[str, float]:
    found = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--resources"]
    assert len(found) == 1, argv  # dask worker's CLI takes only the last one
    pairs = found[0].replace(",", " ").split()
    return {name: float(value) for name, value in (pair.split("=") for pair in pairs)}


def test_a_dask_worker_offers_its_site_and_machine_type_as_resources(tmp_path):
    argv = worker_command(tmp_path)
    assert argv[argv.index("--name") + 1] == "physnet-4f3e2d1c0b"
    assert resources(argv) == {"site:PHYSnet": 4, "machine-type:sge-4core": 4}


def test_the_admins_own_worker_resources_are_kept(tmp_path):
    argv = worker_command(tmp_path, PILOT_DASK_WORKER_OPTIONS="--resources GPU=1 --no-nanny")
    assert resources(argv) == {"GPU": 1, "site:PHYSnet": 4, "machine-type:sge-4core": 4}
    assert "--no-nanny" in argv


def test_a_dask_worker_started_by_hand_offers_no_site(tmp_path):
    argv = worker_command(tmp_path, PILOT_SITE="", PILOT_MACHINE_TYPE="")
    assert "--resources" not in argv


def test_status_shows_where_each_startd_says_it_is():
    from tardis_sge_dask.status import condor_status_command, parse_condor_slots

    asked = condor_status_command({})
    assert asked[-2:] == ["TardisDroneSite", "TardisDroneMachineType"]
    answer = "\n".join([
        "physnet-1\tslot1@physnet-1@node3\tPartitionable\tundefined\tundefined\tPHYSnet\tsge-4core",
        "physnet-1\tslot1_1@physnet-1@node3\tDynamic\t12.0\tw-12\tPHYSnet\tsge-4core",
        "hummel-2\tslot1@hummel-2@n7\tPartitionable\tundefined\tundefined\thummel\tsone",
        # a drone of an older pilot says nothing about its site
        "old-3\tslot1@old-3@n8\tPartitionable\tundefined\tundefined\tundefined\tundefined",
    ])  # fmt: skip
    described = parse_condor_slots(answer)
    assert described["physnet-1"] == (
        "startd slot1@physnet-1@node3 at PHYSnet/sge-4core; job 12.0 = worker w-12"
    )
    assert described["hummel-2"] == "startd slot1@hummel-2@n7 at hummel/sone"
    assert described["old-3"] == "startd slot1@old-3@n8"


def test_status_shows_where_each_dask_worker_says_it_is():
    from tardis_sge_dask.status import worker_location

    offered = {"GPU": 1.0, "site:PHYSnet": 4.0, "machine-type:sge-4core": 4.0}
    assert worker_location(offered) == ("PHYSnet", "sge-4core")
    assert worker_location({}) == ("", "")


def test_status_shows_where_the_recorded_drone_said_it_was():
    """The real collector's answer to status's query (recorded-23.9): a drone whose pilot
    had PILOT_SITE=record and PILOT_MACHINE_TYPE=onecore."""
    import json

    from tardis_sge_dask.status import parse_condor_slots
    from tests.conftest import FIXTURES

    recorded = FIXTURES / "htcondor" / "recorded-23.9"
    drone = json.loads((recorded / "manifest.json").read_text())["drone"]
    answer = (recorded / "condor_status-status-cli-busy.stdout").read_text()
    assert "@vm at record/onecore; job " in parse_condor_slots(answer)[drone]
