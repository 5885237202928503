"""Build site adapters from an in-memory TARDIS configuration (the Configuration borg)."""

from __future__ import annotations

from typing import Any

from tardis.configuration.configuration import Configuration
from tardis.utilities.attributedict import AttributeDict

SITE = "testsite"
MACHINE_TYPE = "small"


def site_section(pilot: str, **machine_type_config: Any) -> dict[str, Any]:
    return {
        "MachineTypes": [MACHINE_TYPE],
        "MachineMetaData": {MACHINE_TYPE: {"Cores": 2, "Memory": 4, "Disk": 10}},
        "MachineTypeConfiguration": {
            MACHINE_TYPE: {"StartupCommand": pilot, **machine_type_config}
        },
    }


def configure(adapter: str, section: dict[str, Any], site: str = SITE, **site_keys: Any) -> None:
    Configuration()._shared_state.clear()
    Configuration().update_config(
        {
            "Sites": [{"name": site, "adapter": adapter, "quota": 100, **site_keys}],
            site: section,
            "BatchSystem": {
                "adapter": "FakeBatchSystem",
                "allocation": 1.0,
                "utilisation": 1.0,
                "machine_status": "Available",
            },
        }
    )


def make_adapter(
    adapter_class: type, adapter: str, section: dict[str, Any], site: str = SITE, **site_keys: Any
):
    # each test gets fresh shared job listings, and (unless it says otherwise) one that
    # runs the listing command for every status question, as it changes canned answers
    getattr(adapter_class, "_listings", {}).clear()
    # and fresh removal bulks, sent through this test's executor
    getattr(adapter_class, "_removals", {}).clear()
    if hasattr(adapter_class, "_listings"):
        section = {"listing_max_age": 0, **section}
    configure(adapter, section, site, **site_keys)
    return adapter_class(machine_type=MACHINE_TYPE, site_name=site)


def two_machine_type_sge(pilot: str, executor: Any) -> tuple[Any, Any]:
    """SGE adapters of one site for its ``small`` and ``large`` (8-core) machine types."""
    from tardis_sge_dask.sites.sge import SGEAdapter

    section = site_section(pilot, ParallelEnvironment="smp")
    section["MachineTypes"].append("large")
    section["MachineMetaData"]["large"] = {"Cores": 8, "Memory": 32, "Disk": 100}
    section["MachineTypeConfiguration"]["large"] = dict(
        section["MachineTypeConfiguration"]["small"]
    )
    section["executor"] = executor
    small = make_adapter(SGEAdapter, "SGE", section)
    return small, SGEAdapter(machine_type="large", site_name=SITE)


def drone(uuid: str = "testsite-0123456789", job_id: str | None = None) -> AttributeDict:
    attributes = AttributeDict(
        drone_uuid=uuid,
        obs_machine_meta_data_translation_mapping=AttributeDict(
            Cores=1, Memory=1024, Disk=1024 * 1024
        ),
        site_name=SITE,
        machine_type=MACHINE_TYPE,
    )
    if job_id is not None:
        attributes["remote_resource_uuid"] = job_id
    return attributes


class RecordingExecutor:
    """An executor answering from canned outputs, recording every command it gets."""

    def __init__(self, answers: dict[str, Any] | None = None):
        self.answers = answers or {}
        self.commands: list[tuple[str, str | None]] = []

    async def run_command(self, command: str, stdin_input: str | None = None):
        self.commands.append((command, stdin_input))
        program = command.split()[0]
        answer = self.answers.get(program)
        if callable(answer):
            answer = answer(command)
        if isinstance(answer, BaseException):
            raise answer
        return AttributeDict(stdout=answer or "", stderr="", exit_code=0)
