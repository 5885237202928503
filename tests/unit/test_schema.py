"""The schemas: what the drifts of issue 12 and the probe of issue 10 found is refused by
``check`` and by the daemon's start-up validation alike, and each adapter's keys are
known to ``check`` exactly as its schema declares them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tardis_sge_dask.check import check, schema_problems
from tardis_sge_dask.configfile import Tagged, dump, load
from tardis_sge_dask.poolfactory import site_adapter_class
from tardis_sge_dask.registry import SITE_ADAPTERS
from tardis_sge_dask.schema.base import keys

ROOT = Path(__file__).resolve().parent.parent.parent
LOCAL = ROOT / "configs" / "local.yaml"
PHYSNET = ROOT / "configs" / "physnet.yaml"


def local(document: dict) -> dict:
    return document["tardis"]["Local"]


def local1(document: dict) -> dict:
    return local(document)["MachineTypeConfiguration"]["local1"]


def physnet(document: dict) -> dict:
    return document["tardis"]["PHYSnet"]


def write(tmp_path: Path, source: Path, mutate: Callable[[dict], None]) -> Path:
    document = load(source)
    mutate(document)
    path = tmp_path / source.name
    path.write_text(dump(document))
    return path


# (case, source config, mutation, key path, what the line says)
REFUSED = [
    (
        "executor-on-local-does-nothing",
        LOCAL,
        lambda d: local(d).update(executor=Tagged("TardisShellExecutor", {})),
        "tardis.Local.executor",
        "unknown key for adapter Local",
    ),
    (
        "walltime-within-the-lifetime-margin",
        LOCAL,
        lambda d: (
            local1(d).update(Walltime="0:10:00"),
            local1(d)["JobEnvironment"].update(PILOT_LIFETIME_MARGIN=900),
        ),
        "tardis.Local.MachineTypeConfiguration.local1.Walltime",
        "600 s leaves nothing after PILOT_LIFETIME_MARGIN=900",
    ),
    (
        "drone-minimum-lifetime-zero",
        LOCAL,
        lambda d: d["tardis"]["Sites"][0].update(drone_minimum_lifetime=0),
        "tardis.Sites[0].drone_minimum_lifetime",
        "greater than 0",
    ),
    (
        "job-environment-name",
        PHYSNET,
        lambda d: physnet(d)["JobEnvironment"].update({"PILOT-MODE": "dask"}),
        "tardis.PHYSnet.JobEnvironment.PILOT-MODE",
        "not a variable name",
    ),
    (
        "unknown-pilot-setting",
        PHYSNET,
        lambda d: physnet(d)["JobEnvironment"].update(PILOT_COLECTOR="cm:9618"),
        "tardis.PHYSnet.JobEnvironment.PILOT_COLECTOR",
        "unknown pilot setting",
    ),
    (
        "site-name-with-comma",
        PHYSNET,
        lambda d: d["tardis"]["Sites"][0].update(name="PHYS,net"),
        "tardis.Sites[0].name",
        "must not contain a comma, a newline or a CR",
    ),
    (
        "machine-type-name-with-newline",
        PHYSNET,
        lambda d: physnet(d)["MachineTypes"].append("obelix\n#$ -t 1-1000"),
        "tardis.PHYSnet.MachineTypes",
        "'obelix\\n#$ -t 1-1000'",  # the value is named, whatever the rule's wording
    ),
    (
        "machine-type-name-with-cr",
        PHYSNET,
        lambda d: physnet(d)["MachineMetaData"].update({"obelix\r": {"Cores": 1}}),
        "tardis.PHYSnet.MachineMetaData",
        "obelix",
    ),
    (
        "queue-typo",
        PHYSNET,
        lambda d: physnet(d)["MachineTypeConfiguration"]["idefix"].update(Queu="idefix.q"),
        "tardis.PHYSnet.MachineTypeConfiguration.idefix.Queu",
        "unknown key for adapter SGE. Fix: did you mean 'Queue'",
    ),
    (
        "multi-core-sge-without-parallel-environment",
        PHYSNET,
        lambda d: physnet(d)["MachineTypeConfiguration"]["idefix"].pop("ParallelEnvironment"),
        "tardis.PHYSnet.MachineTypeConfiguration.idefix.ParallelEnvironment",
        "a drone of 8 cores needs a parallel environment",
    ),
]


@pytest.mark.parametrize(
    ("source", "mutate", "key_path", "message"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_check_and_the_daemon_refuse_it_alike(tmp_path, source, mutate, key_path, message):
    path = write(tmp_path, source, mutate)
    for problems in (check(path, check_files=False), schema_problems(path)):
        lines = [str(problem) for problem in problems]
        assert any(line.startswith(f"{path}: {key_path}") and message in line for line in lines), (
            lines
        )


def test_bulk_size_on_local_is_read_by_the_shared_base(tmp_path):
    path = write(tmp_path, LOCAL, lambda d: local(d).update(bulk_size=10, bulk_delay=0.5))
    assert check(path, check_files=False) == []


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    text = PHYSNET.read_text().replace(
        "        Queue: idefix.q\n", "        Queue: idefix.q\n        Queue: obelix.q\n", 1
    )
    path = tmp_path / "physnet.yaml"
    path.write_text(text)
    for problems in (check(path, check_files=False), schema_problems(path)):
        assert len(problems) == 1
        assert "duplicate key 'Queue' (first at line" in problems[0].problem


def _unknown_keys(tmp_path: Path, adapter: str, section: dict) -> list[str]:
    document = load(LOCAL)
    document["tardis"]["Sites"][0]["adapter"] = adapter
    document["tardis"]["Local"] = section
    path = tmp_path / "config.yaml"
    path.write_text(dump(document))
    return [p.key_path for p in schema_problems(path) if p.problem.startswith("unknown key")]


@pytest.mark.parametrize("adapter", sorted(SITE_ADAPTERS))
def test_check_knows_exactly_the_schema_keys(tmp_path, adapter):
    """A key is added in one place, its schema: check accepts it, and nothing else."""
    entry = SITE_ADAPTERS[adapter]
    base = {
        "MachineTypes": ["local1"],
        "MachineMetaData": {"local1": {"Cores": 1, "Memory": 1, "Disk": 1}},
    }
    for key in [*keys(entry.schema), "NotAKey"]:
        unknown = _unknown_keys(tmp_path, adapter, {**base, key: base.get(key, "x")})
        assert unknown == ([] if key in keys(entry.schema) else [f"tardis.Local.{key}"])
    machine_keys = keys(entry.schema.machine_type_schema)
    for key in [*machine_keys, "NotAKey"]:
        section = {**base, "MachineTypeConfiguration": {"local1": {key: "x"}}}
        unknown = _unknown_keys(tmp_path, adapter, section)
        path = f"tardis.Local.MachineTypeConfiguration.local1.{key}"
        assert unknown == ([] if key in machine_keys else [path])


@pytest.mark.parametrize("adapter", sorted(SITE_ADAPTERS))
def test_the_registry_builds_each_adapter(adapter):
    entry = SITE_ADAPTERS[adapter]
    assert site_adapter_class(adapter) is entry.load()
    assert entry.startup_command_required is (adapter != "Local")
