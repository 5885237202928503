"""``tardis-sge-dask check``: every broken configuration gets its own clear line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tardis_sge_dask.check import check
from tardis_sge_dask.cli import main
from tardis_sge_dask.configfile import Tagged, dump, load

ROOT = Path(__file__).resolve().parent.parent.parent
LOCAL = ROOT / "configs" / "local.yaml"


def tardis(document: dict) -> dict:
    return document["tardis"]


def local(document: dict) -> dict:
    return document["tardis"]["Local"]


def machine(document: dict) -> dict:
    return local(document)["MachineTypeConfiguration"]["local1"]


def _set(path: Callable[[dict], dict], key: str, value) -> Callable[[dict], None]:
    def mutate(document: dict) -> None:
        path(document)[key] = value

    return mutate


def _delete(path: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    def mutate(document: dict) -> None:
        del path(document)[key]

    return mutate


def _rename(path: Callable[[dict], dict], old: str, new: str) -> Callable[[dict], None]:
    def mutate(document: dict) -> None:
        section = path(document)
        section[new] = section.pop(old)

    return mutate


def _controller(document: dict) -> dict:
    return document["pipeline"][0].value


def _source(document: dict) -> dict:
    return document["pipeline"][0].value["source"].value


def _retag(document: dict) -> None:
    document["pipeline"][0] = Tagged("DaskDemandControler", document["pipeline"][0].value)


def _both(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(document: dict) -> None:
        for mutation in mutations:
            mutation(document)

    return mutate


# (case id, mutation of configs/local.yaml, key path, what the line must say)
BROKEN = [
    (
        "unknown-section",
        _rename(lambda d: d, "pipeline", "pipelin"),
        "pipelin:",
        "unknown section. Fix: did you mean 'pipeline'",
    ),
    ("missing-pipeline", _delete(lambda d: d, "pipeline"), "pipeline:", "missing"),
    (
        "unknown-controller-tag",
        _retag,
        "pipeline[0]:",
        "unknown tag !DaskDemandControler. Fix: did you mean 'DaskDemandController'",
    ),
    (
        "unknown-controller-key",
        _rename(_controller, "interval", "intervall"),
        "pipeline[0] (!DaskDemandController).intervall:",
        "did you mean 'interval'",
    ),
    (
        "controller-wrong-type",
        _set(_controller, "idle_time", "a while"),
        "pipeline[0] (!DaskDemandController).idle_time:",
        "expected a number, got 'a while'",
    ),
    (
        "source-missing-address",
        _delete(_source, "address"),
        "source (!DaskSchedulerDemand).address:",
        "missing (required)",
    ),
    (
        "pool-factory-not-importable",
        lambda d: d["pipeline"][1].update(__type__="tardis_sge_dask.nothing.create_pool"),
        "pipeline[1].__type__:",
        "'tardis_sge_dask.nothing.create_pool' cannot be imported",
    ),
    (
        "unknown-site-adapter",
        lambda d: tardis(d)["Sites"][0].update(adapter="Locl"),
        "tardis.Sites[0].adapter:",
        "unknown site adapter 'Locl'. Fix: did you mean 'Local'",
    ),
    (
        "unknown-site-entry-key",
        _rename(lambda d: tardis(d)["Sites"][0], "quota", "qouta"),
        "tardis.Sites[0].qouta:",
        "did you mean 'quota'",
    ),
    (
        "unknown-batch-system",
        lambda d: tardis(d)["BatchSystem"].update(adapter="Dsk"),
        "tardis.BatchSystem.adapter:",
        "unknown batch system adapter 'Dsk'",
    ),
    (
        "dask-without-address",
        _delete(lambda d: tardis(d)["BatchSystem"], "scheduler_address"),
        "tardis.BatchSystem.scheduler_address:",
        "missing (required)",
    ),
    (
        "machine-type-without-metadata",
        lambda d: local(d)["MachineMetaData"].pop("local1"),
        "tardis.Local.MachineMetaData.local1:",
        "missing: a machine type without metadata",
    ),
    (
        "metadata-wrong-type",
        lambda d: local(d)["MachineMetaData"]["local1"].update(Memory="lots"),
        "tardis.Local.MachineMetaData.local1.Memory:",
        "expected a positive number, got 'lots'",
    ),
    (
        "unreadable-pilot",
        _set(machine, "StartupCommand", "/nonexistent/drone-pilot.sh"),
        "tardis.Local.MachineTypeConfiguration.local1.StartupCommand:",
        "pilot /nonexistent/drone-pilot.sh does not exist",
    ),
    (
        "unknown-machine-type-key",
        _set(machine, "Walltme", "1:00:00"),
        "tardis.Local.MachineTypeConfiguration.local1.Walltme:",
        "unknown key for adapter Local. Fix: did you mean 'Walltime'",
    ),
    (
        "quota-zero",
        lambda d: tardis(d)["Sites"][0].update(quota=0),
        "tardis.Sites[0].quota:",
        "expected a whole number of cores (not 0)",
    ),
    (
        "quota-below-one-drone",
        _both(
            lambda d: local(d)["MachineMetaData"]["local1"].update(Cores=4),
            _set(local, "MaxCores", 8),
        ),
        "tardis.Sites[0].quota:",
        "2 cores is less than one drone of local1 (4 cores)",
    ),
    (
        "max-cores-below-one-drone",
        _both(
            lambda d: local(d)["MachineMetaData"]["local1"].update(Cores=4),
            lambda d: tardis(d)["Sites"][0].update(quota=8),
        ),
        "tardis.Local.MaxCores:",
        "2 is less than one drone of local1 (4 cores)",
    ),
    (
        "unreadable-ssh-key",
        _set(
            _controller,
            "source",
            Tagged(
                "CondorQueueDemand",
                {
                    "executor": Tagged(
                        "TardisSSHExecutor",
                        {"host": "submit.example", "client_keys": ["/nonexistent/id"]},
                    )
                },
            ),
        ),
        "(!CondorQueueDemand).executor.client_keys[0]:",
        "SSH key /nonexistent/id does not exist",
    ),
    (
        "executor-on-local",
        _set(local, "executor", Tagged("TardisShellExecutor", {})),
        "tardis.Local.executor:",
        "unknown key for adapter Local",
    ),
    (
        "unreadable-token",
        lambda d: machine(d)["JobEnvironment"].update(PILOT_TOKEN_FILE="/nonexistent/drone.token"),
        "JobEnvironment.PILOT_TOKEN_FILE:",
        "token file /nonexistent/drone.token does not exist",
    ),
    (
        "malformed-walltime",
        _set(machine, "Walltime", "ten hours"),
        "tardis.Local.MachineTypeConfiguration.local1.Walltime:",
        "expected seconds or H:MM:SS, got 'ten hours'",
    ),
    (
        "site-without-section",
        lambda d: tardis(d).pop("Local"),
        "tardis.Local:",
        "missing: site Local has no section",
    ),
    (
        "registry-directory-missing",
        lambda d: tardis(d)["Plugins"]["SqliteRegistry"].update(
            db_file="/nonexistent/dir/drones.db"
        ),
        "tardis.Plugins.SqliteRegistry.db_file:",
        "directory /nonexistent/dir does not exist",
    ),
    (
        "dask-mode-without-scheduler",
        lambda d: machine(d)["JobEnvironment"].pop("PILOT_DASK_SCHEDULER"),
        "JobEnvironment.PILOT_DASK_SCHEDULER:",
        "missing: PILOT_MODE=dask needs it",
    ),
    (
        "unknown-site-key",
        _set(local, "MaxCore", 2),
        "tardis.Local.MaxCore:",
        "unknown key for adapter Local. Fix: did you mean 'MaxCores'",
    ),
]


def write_broken(tmp_path: Path, mutate: Callable[[dict], None]) -> Path:
    document = load(LOCAL)
    mutate(document)
    path = tmp_path / "broken.yaml"
    path.write_text(dump(document))
    return path


def test_the_shipped_local_config_passes():
    assert check(LOCAL) == []


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_cobald_config_passes(config, capsys):
    if config.name == "jobqueue.yaml":
        return  # a dask-jobqueue file, not a COBalD configuration
    # production paths (pilot, keys, registry) exist only on the production host
    assert [str(problem) for problem in check(config, check_files=False)] == []
    assert main(["check", "--skip-files", str(config)]) == 0


@pytest.mark.parametrize(
    ("mutate", "key_path", "message"),
    [case[1:] for case in BROKEN],
    ids=[case[0] for case in BROKEN],
)
def test_a_broken_config_gets_one_clear_line(tmp_path, capsys, mutate, key_path, message):
    path = write_broken(tmp_path, mutate)
    assert main(["check", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    matching = [line for line in lines if key_path in line and message in line]
    assert matching, f"no line with {key_path!r} and {message!r} in:\n" + "\n".join(lines)
    assert all(line.startswith(f"{path}: ") and ". Fix: " in line for line in lines)


def test_each_broken_config_has_its_own_message(tmp_path):
    first_lines = set()
    for index, (_, mutate, _, _) in enumerate(BROKEN):
        directory = tmp_path / str(index)
        directory.mkdir()
        problems = check(write_broken(directory, mutate))
        assert problems
        first_lines.add(f"{problems[0].key_path}: {problems[0].problem}")
    assert len(first_lines) == len(BROKEN) >= 15


def test_not_yaml_names_the_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("pipeline:\n  - !StaticDemand {demand: 1\n")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: (file): not valid YAML (line" in out


def test_missing_file(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().out


def test_a_good_config_says_so(capsys):
    assert main(["check", str(LOCAL)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_pilot_settings_are_checked_as_the_drone_gets_them(tmp_path):
    """Site-wide JobEnvironment, overridden per machine type, as the adapter merges them."""
    physnet = load(ROOT / "configs" / "physnet.yaml")
    site = physnet["tardis"]["PHYSnet"]
    # the collector is set once for the whole site: a machine type that only adds GPUs
    # inherits it (configs/physnet.yaml's graphix), so nothing is reported
    assert "PILOT_COLLECTOR" in site["JobEnvironment"]
    assert check(ROOT / "configs" / "physnet.yaml", check_files=False) == []
    # without it, the gap is reported once, where it belongs - not once per machine type
    del site["JobEnvironment"]["PILOT_COLLECTOR"]
    path = tmp_path / "physnet.yaml"
    path.write_text(dump(physnet))
    problems = [f"{p.key_path}: {p.problem}" for p in check(path, check_files=False)]
    assert (
        problems.count(
            "tardis.PHYSnet.JobEnvironment.PILOT_COLLECTOR:"
            " missing: PILOT_MODE=htcondor needs it (the pilot exits 10 without)"
        )
        == 1
    )
