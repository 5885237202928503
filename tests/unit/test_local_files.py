"""The Local adapter's files on this host hold what a drone gets: only its user reads them."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.sites.local import LocalAdapter
from tardis_sge_dask.sites.processes import kill_tree
from tests.helpers.tardis_config import configure


def test_job_script_log_and_pid_record_are_private(tmp_path: Path):
    pilot = tmp_path / "pilot.sh"
    pilot.write_text("#!/bin/bash\necho started\nexec sleep 30\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # an existing, more open directory: the files must still be 0600
    configure(
        "Local",
        {
            "StateDirectory": str(state),
            "MachineTypes": ["one"],
            "MachineMetaData": {"one": {"Cores": 1, "Memory": 1, "Disk": 1}},
            "MachineTypeConfiguration": {
                "one": {"StartupCommand": str(pilot), "JobEnvironment": {"API_TOKEN": "tok"}}
            },
        },
        site="Lcl",
    )
    LocalAdapter._cores_in_use.clear()
    adapter = LocalAdapter(machine_type="one", site_name="Lcl")
    old_umask = os.umask(0o022)  # the usual default, under which files come out 0644
    try:
        result = asyncio.run(
            adapter.deploy_resource(
                AttributeDict(
                    drone_uuid="lcl-0123456789",
                    site_name="Lcl",
                    machine_type="one",
                    obs_machine_meta_data_translation_mapping=AttributeDict(
                        Cores=1, Memory=1024, Disk=1024 * 1024
                    ),
                )
            )
        )
    finally:
        os.umask(old_umask)
    try:
        for suffix in (".sh", ".log", ".json"):
            mode = stat.S_IMODE((state / f"lcl-0123456789{suffix}").stat().st_mode)
            assert mode == 0o600, f"{suffix}: {oct(mode)}"
    finally:
        kill_tree(int(result.remote_resource_uuid.split("-")[0]))
